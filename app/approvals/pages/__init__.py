"""The HTML pages a reviewer reaches by a signed link: one action's review page and the inbox."""
