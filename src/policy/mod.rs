//! How calls are made: the retry policy (Amazon States Language `Retry`) and the client-side
//! pacing inside AWS's per-account limits.

pub(crate) mod ratelimit;
pub mod retry;
