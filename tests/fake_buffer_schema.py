"""The part of Buffer's GraphQL schema the fake Buffer checks selections against, copied from
Buffer's API reference (https://developers.buffer.com/reference.html, as copied in
api-evangelist/buffer graphql/buffer-api-reference.md, 2026-08-19). `None` marks a scalar or enum
field; composite types listed in `unmodelled` exist in Buffer but the fake does not answer them."""

from __future__ import annotations

from tests.fake_graphql import Schema

_S = None  # a scalar or enum field

_ERRORS = ("NotFoundError", "UnauthorizedError", "UnexpectedError", "RestProxyError", "LimitReachedError",
           "InvalidInputError")
_CHANNEL_METADATA = frozenset({"InstagramMetadata", "TiktokMetadata", "YoutubeMetadata", "PinterestMetadata",
                               "MastodonMetadata", "BlueskyMetadata", "GoogleBusinessMetadata", "FacebookMetadata",
                               "TwitterMetadata", "LinkedInMetadata"})

SCHEMA = Schema(
    objects={
        "Query": {"account": "Account", "channels": "Channel", "channel": "Channel", "posts": "PostsResults",
                  "post": "Post", "dailyPostingLimits": "DailyPostingLimitStatus",
                  "aggregatedPostMetrics": "AggregatedPostMetrics", "ideas": "IdeasConnection",
                  "ideaGroups": "IdeaGroup", "postTemplate": "PostTemplate", "postTemplates": "PostTemplate"},
        "Mutation": {"createPost": "PostActionPayload", "editPost": "PostActionPayload",
                     "deletePost": "DeletePostPayload", "createIdea": "CreateIdeaPayload",
                     "movePostInQueue": "MovePostInQueuePayload", "createPostTemplate": "CreatePostTemplatePayload",
                     "updatePostTemplate": "UpdatePostTemplatePayload",
                     "deletePostTemplate": "DeletePostTemplatePayload"},
        "Account": {"id": _S, "email": _S, "backupEmail": _S, "avatar": _S, "createdAt": _S,
                    "organizations": "Organization", "timezone": _S, "name": _S, "preferences": "Preferences",
                    "connectedApps": "ConnectedApp"},
        "Organization": {"id": _S, "channelCount": _S, "limits": "OrganizationLimits", "members": "MemberConnection",
                         "name": _S, "ownerEmail": _S, "shouldEnforce2FASetup": _S},
        "Channel": {"id": _S, "allowedActions": _S, "avatar": _S, "descriptor": _S, "displayName": _S,
                    "externalLink": _S, "hasActiveMemberDevice": _S, "isDisconnected": _S, "isLocked": _S,
                    "isNew": _S, "isQueuePaused": _S, "linkShortening": "ChannelLinkShortening",
                    "metadata": "ChannelMetadata", "name": _S, "organizationId": _S, "postingGoal": "PostingGoal",
                    "postingSchedule": "ScheduleV2", "products": _S, "scopes": _S, "service": _S, "serviceId": _S,
                    "showTrendingTopicSuggestions": _S, "timezone": _S, "type": _S,
                    "weeklyPostingLimit": "WeeklyPostingLimit", "createdAt": _S, "updatedAt": _S},
        "ChannelLinkShortening": {"config": "LinkShorteningConfig", "isEnabled": _S},
        "MastodonMetadata": {"maxCharacters": _S, "serverUrl": _S},
        "BlueskyMetadata": {"serverUrl": _S},
        "TwitterMetadata": {"subscriptionType": _S},
        "InstagramMetadata": {"defaultToReminders": _S},
        "LinkedInMetadata": {"shouldShowLinkedinAnalyticsRefreshBanner": _S},
        "FacebookMetadata": {"locationData": "LocationData"},
        "Post": {"id": _S, "allowedActions": _S, "assets": "Asset", "author": "Author", "channel": "Channel",
                 "channelId": _S, "channelService": _S, "dueAt": _S, "error": "PostPublishingError",
                 "externalLink": _S, "ideaId": _S, "isCustomScheduled": _S, "metadata": "PostMetadata",
                 "metrics": "PostMetric", "metricsUpdatedAt": _S, "notes": "Note", "notificationStatus": _S,
                 "schedulingType": _S, "sentAt": _S, "sharedNow": _S, "shareMode": _S, "status": _S, "tags": "Tag",
                 "text": _S, "via": _S, "createdAt": _S, "updatedAt": _S},
        "ImageAsset": {"id": _S, "image": "ImageMetadata", "mimeType": _S, "source": _S, "thumbnail": _S, "type": _S},
        "VideoAsset": {"id": _S, "video": "VideoMetadata", "mimeType": _S, "source": _S, "thumbnail": _S, "type": _S},
        "DocumentAsset": {"id": _S, "document": "DocumentMetadata", "mimeType": _S, "source": _S, "thumbnail": _S,
                          "type": _S},
        "Author": {"id": _S, "avatar": _S, "email": _S, "isDeleted": _S, "name": _S},
        "Tag": {"id": _S, "color": _S, "colorName": _S, "isLocked": _S, "name": _S},
        "PostPublishingError": {"message": _S, "rawError": _S, "supportUrl": _S},
        "PostsResults": {"edges": "PostsEdge", "pageInfo": "PaginationPageInfo"},
        "PostsEdge": {"cursor": _S, "node": "Post"},
        "PaginationPageInfo": {"endCursor": _S, "hasNextPage": _S, "hasPreviousPage": _S, "startCursor": _S},
        "DailyPostingLimitStatus": {"channelId": _S, "isAtLimit": _S, "limit": _S, "scheduled": _S, "sent": _S},
        "PostActionSuccess": {"post": "Post"},
        "RestProxyError": {"message": _S, "link": _S, "code": _S},
        **{name: {"message": _S} for name in (*_ERRORS, "VoidMutationError") if name != "RestProxyError"},
    },
    unions={"PostActionPayload": frozenset({"PostActionSuccess", *_ERRORS}),
            "ChannelMetadata": _CHANNEL_METADATA},
    interfaces={"MutationError": frozenset({*_ERRORS, "VoidMutationError"}),
                "Asset": frozenset({"ImageAsset", "VideoAsset", "DocumentAsset"})},
    interface_fields={"MutationError": {"message": _S},
                      "Asset": {"id": _S, "mimeType": _S, "source": _S, "thumbnail": _S, "type": _S}},
    unmodelled=frozenset({
        "AggregatedPostMetrics", "IdeasConnection", "IdeaGroup", "PostTemplate", "DeletePostPayload",
        "CreateIdeaPayload", "MovePostInQueuePayload", "CreatePostTemplatePayload", "UpdatePostTemplatePayload",
        "DeletePostTemplatePayload", "Preferences", "ConnectedApp", "OrganizationLimits", "MemberConnection",
        "PostingGoal", "ScheduleV2", "WeeklyPostingLimit", "LinkShorteningConfig", "LocationData", "PostMetadata",
        "PostMetric", "Note", "ImageMetadata", "VideoMetadata", "DocumentMetadata", "TiktokMetadata",
        "YoutubeMetadata", "PinterestMetadata", "GoogleBusinessMetadata"}),
)

# Input fields a CreatePostInput may carry (the reference, plus needsApproval added 2026-07-28).
CREATE_POST_INPUT = frozenset({"aiAssisted", "assets", "channelId", "draftId", "dueAt", "ideaId", "metadata", "mode",
                               "needsApproval", "saveToDraft", "schedulingType", "source", "tagIds", "text"})
SHARE_MODES = frozenset({"addToQueue", "shareNow", "shareNext", "customScheduled"})
SCHEDULING_TYPES = frozenset({"automatic", "notification"})
POST_STATUSES = frozenset({"draft", "needs_approval", "scheduled", "sending", "sent", "error"})
SERVICES = frozenset({"instagram", "facebook", "twitter", "linkedin", "pinterest", "tiktok", "googlebusiness",
                      "startPage", "mastodon", "youtube", "threads", "bluesky"})
