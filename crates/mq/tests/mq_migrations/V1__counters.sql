-- The "effect" a test handler applies: one counter row per test.
CREATE TABLE counters (
    name text PRIMARY KEY,
    value int NOT NULL DEFAULT 0
);
