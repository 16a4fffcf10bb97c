//! `chukan_audit_tree_head_age_seconds`: 0 while every record is covered by a signed tree
//! head; otherwise the age of the newest head, kept across a restart from the database.

use crate::helpers::*;

fn age() -> f64 {
    chukan_audit::metrics::tree_head_age_seconds().expect("the signer runs in this process")
}

#[actix_rt::test]
async fn the_age_counts_while_records_wait_for_a_signed_head() {
    // The periodic signer is off: rounds run when the test signs.
    let app = spawn_app().await;
    // The signer starts once its lease is taken (ADR 0005), a moment after the service.
    wait_until("the signer runs under its lease", || async {
        chukan_audit::metrics::tree_head_age_seconds().is_some()
    })
    .await;
    assert_eq!(age(), 0.0, "nothing appended, nothing waits");

    let first = [
        record(ORG_A, "addressee-1", PEER_1, "JT01010000000001"),
        record(ORG_A, "addressee-2", PEER_1, "JT01010000000001"),
    ];
    app.append_all(&first, 2).await;
    wait_until("unsigned records reported", || async { age() > 0.0 }).await;

    // As a restarted process finds it: a head signed an hour ago covering one of the two.
    app.tamper(
        ORG_A,
        "INSERT INTO audit.tree_heads (tenant_id, size, root, signed_at, kid, signature)
         VALUES (current_setting('chukan.tenant'), 1, '\\x00', now() - interval '1 hour',
                 'k', '\\x00')",
    )
    .await;
    app.tamper(ORG_A, "UPDATE audit.logs SET signed_size = 1")
        .await;
    chukan_audit::heads::restore_coverage(&app.state)
        .await
        .unwrap();
    assert!(age() >= 3600.0, "age {} from the hour-old head", age());

    // A round signs the rest: covered.
    app.sign().await;
    assert_eq!(age(), 0.0);

    // A later record waits, counted from the head just signed (not the old one).
    app.append_all(
        &[record(ORG_A, "addressee-3", PEER_2, "JT01010000000001")],
        3,
    )
    .await;
    wait_until("the new record reported", || async { age() > 0.0 }).await;
    assert!(age() < 600.0, "age {} from the fresh head", age());
    app.sign().await;
    assert_eq!(age(), 0.0);
}
