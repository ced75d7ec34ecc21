-- Rows of every kind the previous release keeps, written through its own functions (their names and
-- parameters as in schema_previous.sql), for tests/test_upgrade.py. An action's summary names the
-- state it is left in; every lease is 600 s, so the test finds them live, then expired.
do $$
declare
  v_new jsonb := jsonb_build_object('agent', 'support', 'kind', 'note.record', 'reasoning', 'seed',
                                    'payload', jsonb_build_object('body', 'a note'), 'impact', '{}'::jsonb);
  v_id uuid;
  v_claim jsonb;
  v_token uuid;
  v_notification jsonb;
  v_batch jsonb;
  v_run jsonb;
  v_now_ms bigint;
begin
  -- expired: its approval time ran out (its queued announce is cancelled with it)
  v_id := submit_action(v_new || '{"summary": "seed: expired"}', 'MEDIUM', '[]', false, 1, 5, 'seed', null)->>'id';
  update clock_offset set offset_interval = offset_interval + interval '2 seconds' where id;
  perform expire_pending('expiry', 10);

  -- rejected by a name typed on a link, after its announce was posted: an outcome edit waits
  v_id := submit_action(v_new || '{"summary": "seed: rejected"}', 'MEDIUM', '[]', false, 86400, 5, 'seed', null)->>'id';
  v_notification := claim_notifications('discord-seed', 600, 1)->0;
  perform mark_notification_dispatched((v_notification->>'id')::bigint, (v_notification->>'attempt_token')::uuid);
  perform record_notification_sent((v_notification->>'id')::bigint, (v_notification->>'attempt_token')::uuid,
                                   '1111111111');
  -- pending, its announce claimed by a sender (sending, with a lease)
  perform submit_action(v_new || '{"summary": "seed: pending, announce claimed"}', 'MEDIUM', '[]', false, 86400, 5,
                        'seed', null);
  perform claim_notifications('discord-seed', 600, 1);
  perform decide_action(v_id, 'reject', 'Carol', 'not this week', null, null, null);

  -- pending, with a wrong approval PIN counted
  v_id := submit_action(v_new || '{"summary": "seed: pending, a wrong PIN"}', 'HIGH', '[]', false, 86400, 5, 'seed',
                        null)->>'id';
  perform approval_pin_try(v_id, false, 5, 'Bob', null);

  -- cancelled
  v_id := submit_action(v_new || '{"summary": "seed: cancelled"}', 'MEDIUM', '[]', false, 86400, 5, 'seed', null)->>'id';
  perform cancel_action(v_id, 'cli:dave', 'a duplicate', null);

  -- succeeded, with its note
  perform submit_action(v_new || '{"summary": "seed: succeeded"}', 'LOW', '[]', true, 86400, 5, 'seed', null);
  v_claim := claim_actions('worker-seed', 600, 1)->0;
  perform record_note((v_claim->>'id')::uuid, 'a note', '{}');
  perform finish_action((v_claim->>'id')::uuid, (v_claim->>'attempt_token')::uuid, 'succeeded', '{"note_id": 1}', null,
                        null, true);

  -- failed: its only attempt gave up
  perform submit_action(v_new || '{"summary": "seed: failed"}', 'LOW', '[]', true, 86400, 1, 'seed', null);
  v_claim := claim_actions('worker-seed', 600, 1)->0;
  perform finish_action((v_claim->>'id')::uuid, (v_claim->>'attempt_token')::uuid, 'retry', null, 'HTTP 503', 30, true);

  -- unknown: the outside call went out and its answer was lost
  perform submit_action(v_new || '{"kind": "webhook.post", "summary": "seed: unknown"}', 'LOW', '[]', true, 86400, 5,
                        'seed', null);
  v_claim := claim_actions('worker-seed', 600, 1)->0;
  perform mark_dispatched((v_claim->>'id')::uuid, (v_claim->>'attempt_token')::uuid);
  perform finish_action((v_claim->>'id')::uuid, (v_claim->>'attempt_token')::uuid, 'unknown', null, 'timed out', null,
                        true);

  -- running, dispatched: its lease runs out in the test and it becomes unknown
  perform submit_action(v_new || '{"kind": "webhook.post", "summary": "seed: running, dispatched"}', 'LOW', '[]', true,
                        86400, 5, 'seed', null);
  v_claim := claim_actions('worker-seed', 600, 1)->0;
  perform mark_dispatched((v_claim->>'id')::uuid, (v_claim->>'attempt_token')::uuid);

  -- running, not dispatched: an email campaign, planned, its first batch claimed and sending
  perform submit_action(v_new || jsonb_build_object('kind', 'email.campaign', 'summary', 'seed: running, campaign',
                                                    'payload', jsonb_build_object('subject', 'News', 'html', '<p>Hi</p>')),
                        'LOW', '[]', true, 86400, 5, 'seed', null);
  v_claim := claim_actions('worker-seed', 600, 1)->0;
  v_id := (v_claim->>'id')::uuid;
  perform plan_email_campaign(v_id, '[{"email": "ann@example.com", "name": "Ann"}, {"email": "ben@example.com"},
                                      {"email": "cy@example.com"}]', 2, 300, 20, 'UTC');
  v_batch := claim_campaign_batches('campaigns-seed', 600, 1, 'UTC', v_id)->0;
  v_token := (v_batch->>'attempt_token')::uuid;
  perform reserve_campaign_batch(v_id, 1, v_token, 300, 20, 'UTC', false);
  perform campaign_recipients_sending(v_id, 1, v_token, '["ann@example.com", "ben@example.com"]');

  -- approved and waiting for the executor: by the API token's name, and by the terminal's
  v_id := submit_action(v_new || '{"summary": "seed: approved by api"}', 'MEDIUM', '[]', false, 86400, 5, 'seed',
                        null)->>'id';
  perform decide_action(v_id, 'approve', 'api:alice', null, null, null, null);
  v_id := submit_action(v_new || '{"summary": "seed: approved by cli"}', 'MEDIUM', '[]', false, 86400, 5, 'seed',
                        null)->>'id';
  perform decide_action(v_id, 'approve', 'cli:frank', 'fine', null, null, null);

  -- a stored daily report whose post was claimed and may have gone out
  perform store_daily_report('2026-11-30', '{"day": "2026-11-30", "time_zone": "UTC"}', encode('chart', 'base64'));
  v_token := (claim_daily_report_send('2026-11-30', 'report-seed', 600)->>'attempt_token')::uuid;
  perform mark_daily_report_dispatched('2026-11-30', v_token);

  -- a claimed job run
  perform claim_job_run('daily_report', '2026-12-01 09:00+00', 'instance-seed', 600);

  -- memory
  perform upsert_memories('[{"kind": "kb", "source": "import", "source_id": "handbook/refunds", "title": "Refunds",
                             "content": "Refunds are paid back within fourteen days of the return."}]');

  -- an agent run with a skip and a refusal
  v_run := start_agent_run('support', 'schedule');
  perform close_agent_run((v_run->>'id')::uuid, 'ok', 1, '[]', null,
                          '[{"ref": "ticket-1", "version": "v1", "reason": "nothing to say"}]',
                          '[{"ref": "ticket-2", "reason": "money without facts"}]');

  -- a Claude call's reservation, a HubSpot delivery, a rate window, a maintenance lease
  perform llm_reserve('support', 'claude-sonnet-4-5', 0.05, 5, 'UTC');
  v_now_ms := (extract(epoch from db_now()) * 1000)::bigint;
  perform record_hubspot_webhook('seed-delivery', v_now_ms, 300,
                                 jsonb_build_array(jsonb_build_object('eventId', 1, 'subscriptionType', 'contact.creation',
                                                                      'objectId', 7, 'portalId', 9,
                                                                      'occurredAt', v_now_ms)));
  perform take_rate_slot('hubspot', 100, 10);
  perform take_maintenance_lease('prune', 'instance-seed', 600);
end
$$;
