//! Background work of the code service.

pub mod nws_in;
