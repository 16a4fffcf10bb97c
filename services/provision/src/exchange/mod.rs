//! 情報提供 (provision answering): permits from the NWS answered from the replicas,
//! automatically or by staff, the residents' flags that govern it, the deadlines of manual
//! answers, code links, and the replicas self-information asks for.

pub mod answer;
pub mod api;
pub mod code_links;
pub mod expiry;
pub mod flags;
pub mod manual;
pub mod nws_in;
pub mod selfinfo_rpc;
