-- A change of a staff user's roles (権限) joins the account's trail beside locks and unlocks:
-- who gave or took administrator rights, and when, must be answerable afterwards.
ALTER TABLE admin.account_events DROP CONSTRAINT account_events_event_check;
ALTER TABLE admin.account_events
    ADD CONSTRAINT account_events_event_check
    CHECK (event IN ('locked', 'unlocked', 'roles-changed'));
