//! The domain's types, with no I/O: resources and their places, key references, the events that
//! name them, the callers behind them, the exemption tag, and the outcome of each event.

pub(crate) mod caller;
pub mod event;
pub mod exemption;
pub mod key;
pub mod outcome;
pub mod resource;
