//! Background work of the notice service: the code-link and status-report consumers and the
//! dispatcher of scheduled notices.

pub mod code_links;
pub mod dispatcher;
pub mod nws_in;
