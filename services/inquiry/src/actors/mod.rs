//! Background work of the inquiry service: event consumers, the results consumer, the batch
//! sender and the expiry sweep.

pub mod batch_sender;
pub mod events;
pub mod expiry;
pub mod nws_in;
