//! The one list of the services this binary runs: each with the target that selects it,
//! its migrations, the queues it consumes and how it starts. Adding a service is one entry
//! here (and its `Target`); `chukan migrate`, the bus declaration and `--target` read it.

use chukan_db::Migrations;
use chukan_mq::QueueSpec;
use chukan_runtime::{Context, Parts};
use futures_util::future::BoxFuture;

use crate::cli::Target;

/// One service of the binary.
pub struct Service {
    pub target: Target,
    pub migrations: fn() -> Migrations,
    /// The queues it consumes. Declared before any service starts, whichever run here.
    pub queues: fn() -> Vec<QueueSpec>,
    pub start: for<'a> fn(&'a Context) -> BoxFuture<'a, anyhow::Result<Parts>>,
    /// Its part of the published API (`chukan openapi`, without starting anything).
    pub openapi: Option<fn() -> utoipa::openapi::OpenApi>,
}

/// Every service, in the order they start (admin first: the others learn tenants from it).
pub const SERVICES: &[Service] = &[
    Service {
        target: Target::Admin,
        migrations: chukan_admin::migrations,
        queues: || {
            vec![
                chukan_admin::batch_queue(),
                // Every process asks admin for the calendar on this request/reply queue.
                chukan_admin::calendar_rpc_queue(),
                chukan_admin::status_queue(),
            ]
        },
        start: |ctx| Box::pin(chukan_admin::start(ctx)),
        openapi: Some(chukan_admin::openapi),
    },
    Service {
        target: Target::Code,
        migrations: chukan_code::migrations,
        queues: || vec![chukan_code::inbound_queue()],
        start: |ctx| Box::pin(chukan_code::start(ctx)),
        openapi: Some(chukan_code::openapi),
    },
    Service {
        target: Target::Provision,
        migrations: chukan_provision::migrations,
        queues: || {
            vec![
                chukan_provision::tenant_queue(),
                chukan_provision::nws_in_queue(),
                chukan_provision::code_links_queue(),
                // Self-information asks provision for replicas on this request/reply queue.
                chukan_provision::exchange::selfinfo_rpc::queue(),
            ]
        },
        start: |ctx| Box::pin(chukan_provision::start(ctx)),
        openapi: Some(chukan_provision::openapi),
    },
    Service {
        target: Target::Inquiry,
        migrations: chukan_inquiry::migrations,
        queues: chukan_inquiry::queues,
        start: |ctx| Box::pin(chukan_inquiry::start(ctx)),
        openapi: Some(chukan_inquiry::openapi),
    },
    Service {
        target: Target::Audit,
        migrations: chukan_audit::migrations,
        queues: || {
            vec![
                chukan_audit::records_queue(),
                // Self-information asks audit for disclosable records on this queue.
                chukan_audit::disclosable::queue(),
            ]
        },
        start: |ctx| Box::pin(chukan_audit::start(ctx)),
        openapi: Some(chukan_audit::openapi),
    },
    Service {
        target: Target::Notice,
        migrations: chukan_notice::migrations,
        queues: chukan_notice::queues,
        start: |ctx| Box::pin(chukan_notice::start(ctx)),
        openapi: Some(chukan_notice::openapi),
    },
    Service {
        target: Target::Selfinfo,
        migrations: chukan_selfinfo::migrations,
        queues: chukan_selfinfo::queues,
        start: |ctx| Box::pin(chukan_selfinfo::start(ctx)),
        openapi: Some(chukan_selfinfo::openapi),
    },
    Service {
        target: Target::Stats,
        migrations: chukan_stats::migrations,
        queues: chukan_stats::queues,
        start: |ctx| Box::pin(chukan_stats::start(ctx)),
        openapi: Some(chukan_stats::openapi),
    },
    Service {
        target: Target::Relay,
        migrations: chukan_relay::migrations,
        queues: || vec![chukan_relay::outbound_queue()],
        start: |ctx| Box::pin(chukan_relay::start(ctx)),
        // Relay's only listener is the NWS's inbound door, not part of the public API.
        openapi: None,
    },
];

/// Every service's migrations.
pub fn all_migrations() -> Vec<Migrations> {
    SERVICES.iter().map(|s| (s.migrations)()).collect()
}

/// Every queue some service consumes, whichever services this process runs.
///
/// Declared before any service starts (and by `chukan migrate`): a message published to a
/// queue that does not exist yet is lost (or, published mandatory, bounced back for ever),
/// so e.g. admin's first `tenant.changed` must find `provision.tenants` even when
/// provision runs in another Deployment that has not started yet.
pub fn all_queues() -> Vec<QueueSpec> {
    SERVICES.iter().flat_map(|s| (s.queues)()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_but_all_is_one_service_and_no_queue_is_listed_twice() {
        for target in [
            Target::Admin,
            Target::Code,
            Target::Provision,
            Target::Inquiry,
            Target::Audit,
            Target::Notice,
            Target::Selfinfo,
            Target::Stats,
            Target::Relay,
        ] {
            assert_eq!(
                SERVICES.iter().filter(|s| s.target == target).count(),
                1,
                "{}",
                target.label()
            );
        }
        let names: Vec<String> = all_queues().iter().map(|q| q.name.to_string()).collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let schemas: std::collections::HashSet<&str> =
            all_migrations().iter().map(|m| m.schema).collect();
        assert_eq!(schemas.len(), SERVICES.len());
    }
}
