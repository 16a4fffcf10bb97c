-- 稼動状態 (operating status): the newest health of each component as its service announced it
-- (`status.component`), and the status last published (`status.changed`), so several admin
-- processes publish each change once. Platform-level rows without organisation data: no RLS.
CREATE TABLE admin.component_status (
    component text        PRIMARY KEY CHECK (component IN ('nws-link', 'replica-batch')),
    status    text        NOT NULL CHECK (status IN ('ok', 'degraded')),
    detail    text        NOT NULL,
    -- The announcing service's own time; an older announcement never overwrites a newer.
    since     timestamptz NOT NULL
);

CREATE TABLE admin.status_published (
    id          integer     PRIMARY KEY CHECK (id = 1),
    fingerprint text        NOT NULL,
    at          timestamptz NOT NULL
);
