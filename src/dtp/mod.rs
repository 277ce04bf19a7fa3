//! The DTP factory (Twisted's `DTPFactory` / `DTP`): passive port
//! allocation (`ports`) and the transfers themselves (`transfer`). The
//! reactor owns the data sockets' slab entries and calls into these.

pub mod align;
pub mod ports;
pub mod throttle;
pub mod transfer;
