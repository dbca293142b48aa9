//! SPDY/3.1 as Kubernetes' streaming endpoints speak it (spdystream): frames, header
//! compression and a server-side session.

pub(crate) mod dictionary;
pub mod frame;
pub mod session;
pub mod zlib;
