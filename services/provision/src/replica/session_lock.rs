//! Session advisory locks held on a dedicated connection. Dropped without `release` (an
//! error, a cancelled task), the connection is detached from the pool and closed, which frees
//! the lock: a pooled connection never carries a lock to its next borrower.

use anyhow::Context as _;

pub struct SessionLock {
    conn: Option<deadpool_postgres::Object>,
    key: String,
}

impl SessionLock {
    /// Waits for the lock.
    pub async fn acquire(db: &chukan_db::Pool, key: &str) -> anyhow::Result<SessionLock> {
        let conn = db.get().await.context("pool")?;
        conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
            .await
            .context("advisory lock")?;
        Ok(SessionLock {
            conn: Some(conn),
            key: key.to_string(),
        })
    }

    /// Takes the lock if it is free.
    pub async fn try_acquire(
        db: &chukan_db::Pool,
        key: &str,
    ) -> anyhow::Result<Option<SessionLock>> {
        let conn = db.get().await.context("pool")?;
        let got: bool = conn
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await
            .context("advisory lock")?
            .get(0);
        Ok(got.then(|| SessionLock {
            conn: Some(conn),
            key: key.to_string(),
        }))
    }

    /// The locked connection, for statements that belong with the lock.
    pub fn client(&self) -> Option<&deadpool_postgres::Object> {
        self.conn.as_ref()
    }

    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let unlocked = conn
                .execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[&self.key],
                )
                .await;
            if unlocked.is_err() {
                drop(deadpool_postgres::Object::take(conn));
            }
        }
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}
