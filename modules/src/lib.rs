//! Business modules of xfhub, each a routed consumer of the bus whose effects commit in the same
//! transaction as its ack, so that a redelivered message has no second effect.
//!
//! - [`warning`]: smart warning (5.1.5.2): word lists, key risk groups, surges, the 10-day timer
//!   of 12345 work orders;
//! - [`dispatch`]: joint dispatch (5.1.5.3.1): duplicate check, auto-assignment, instant push;
//! - [`alerts`]: alerts and their graded flow (5.1.5.2.4), role holders;
//! - [`text`]: text normalisation and similarity shared by the modules;
//! - [`clock`]: the injectable clock of the timers.

pub mod alerts;
pub mod clock;
pub mod dispatch;
pub mod messages;
pub mod text;
pub mod warning;
