//! A failed database step as the problem answer it becomes: 503 with `Retry-After` when the
//! database did not answer (pool timeout, connection lost, server shutting down, too many
//! connections, a serialisation conflict worth retrying), 500 for anything else. Every
//! service maps its failures here, so the same outage is the same answer on every route.

use chukan_core::Problem;
use deadpool_postgres::PoolError;

/// Turns any failure into a [`Problem`] whose cause the request boundary logs once.
// Problem is what every handler answers with; boxing it here alone would buy nothing.
#[allow(clippy::result_large_err)]
pub trait OrProblem<T> {
    /// `context` names the step (`"keys"`, `"search"`): stable text, never a value.
    fn or_problem(self, context: &'static str) -> Result<T, Problem>;
}

impl<T, E: Into<anyhow::Error>> OrProblem<T> for Result<T, E> {
    fn or_problem(self, context: &'static str) -> Result<T, Problem> {
        self.map_err(|e| problem_of(context, e.into()))
    }
}

/// The problem answer for `error` (see the module's text for which is which).
pub fn problem_of(context: &'static str, error: anyhow::Error) -> Problem {
    if is_unavailable(&error) {
        Problem::unavailable_because(context, error)
    } else {
        Problem::internal_because(context, error)
    }
}

/// True when the error, or any error it wraps, says the database did not answer, rather
/// than that it refused what was asked.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(pool) = cause.downcast_ref::<PoolError>() {
            return matches!(
                pool,
                PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed
            );
        }
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(statement_unavailable)
    })
}

fn statement_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // Class 08 connection exceptions; admin/crash shutdown and "cannot connect now"
        // (57P01–57P03); too many connections (53300); serialisation failure and deadlock
        // (40001, 40P01): the transaction rolled back and the same call may succeed. A
        // read-only transaction refused a write (25006): the cluster is fenced or a standby,
        // mid-failover (ADR 0006); the cell's new primary will take the same call.
        Some(state) => {
            let code = state.code();
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "25006"
                )
        }
        // No SQLSTATE and not closed: the socket failed (I/O) or the connection is gone.
        None => std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_503_with_retry_after_and_its_cause_is_kept_for_the_log() {
        let timeout: Result<(), PoolError> =
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait));
        let problem = timeout.or_problem("pool").unwrap_err();
        assert_eq!(problem.status, 503);
        assert_eq!(problem.code, "service-unavailable");
        assert!(problem.retry_after.is_some());
        let cause = problem.cause.expect("cause kept");
        assert_eq!(cause.context, "pool");
        assert!(cause.unavailable);
    }

    #[test]
    fn any_other_failure_is_500_and_says_nothing_of_its_cause() {
        let failed: Result<(), anyhow::Error> = Err(anyhow::anyhow!("row 7 of 2071345678"));
        let problem = failed.or_problem("search").unwrap_err();
        assert_eq!(problem.status, 500);
        let body = serde_json::to_string(&problem).unwrap();
        assert!(!body.contains("2071345678"), "{body}");
        assert!(!problem.cause.unwrap().unavailable);
    }
}
