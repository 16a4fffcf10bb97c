-- 計画停止日 announced by platform operators at runtime (besides `calendar.planned_outages` in
-- the settings): every change is announced to every process (`calendar.changed`, the whole
-- list with a revision). Platform-level rows with no organisation data: no RLS.
CREATE TABLE admin.planned_outages (
    outage_date date        PRIMARY KEY,
    -- Japanese reason shown with the status (e.g. 「システム更改のため」).
    reason      text        NOT NULL CHECK (reason <> '' AND length(reason) <= 200),
    -- The platform client id that announced it (never a name).
    set_by      text        NOT NULL,
    set_at      timestamptz NOT NULL
);

-- One row: increases with every change, so a process keeps the newest list it has seen.
CREATE TABLE admin.calendar_revision (
    id       integer PRIMARY KEY CHECK (id = 1),
    revision bigint  NOT NULL
);
INSERT INTO admin.calendar_revision (id, revision) VALUES (1, 0);
