//! `code.linked` (符号) as the services that keep their own copy of each link receive it:
//! provision, inquiry and notice each apply it to their own table, in batches
//! ([`crate::batched`]), after the same check.

use chrono::{DateTime, Utc};
use chukan_core::Clock;
use chukan_mq::{Delivery, HandleError, reject};
use chukan_proto::CodeLinked;
use uuid::Uuid;

/// One `code.linked`, checked: a valid addressee and a code, for the delivery's tenant.
pub struct Link {
    pub id: Uuid,
    pub addressee: String,
    pub code: String,
    linked_at_ms: i64,
}

impl Link {
    /// Decodes and checks `delivery`; a message that can never apply is rejected.
    pub fn check(delivery: &Delivery) -> Result<Link, HandleError> {
        let event = delivery.decode::<CodeLinked>()?;
        // The header and the body's tenant come from one producer: a mismatch is a defect.
        delivery.check_tenant(&event.tenant)?;
        if chukan_core::ids::AddresseeNo::parse(&event.addressee).is_err() || event.code.is_empty()
        {
            return Err(reject("CodeLinked without a valid addressee or code"));
        }
        Ok(Link {
            id: delivery.id,
            addressee: event.addressee,
            code: event.code,
            linked_at_ms: event.linked_at_ms,
        })
    }

    /// When the code service linked it (now, for a time out of range).
    pub fn linked_at(&self, clock: &dyn Clock) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(self.linked_at_ms).unwrap_or_else(|| clock.now())
    }
}
