//! The protocol interpreter (Twisted's `ftp.FTP`): parser, command table,
//! replies, the session state machine and the handlers. Sans-IO: nothing in
//! here touches a socket or reads the clock.

pub mod command;
pub mod error;
pub mod handlers;
pub mod reply;
pub mod session;
pub mod table;
#[cfg(test)]
mod session_tests;
