//! The `leanftpd` binary: command line → logging → bind → run.
//! Exit codes: 0 clean shutdown, 1 runtime error, 2 usage or configuration.

use leanftpd::config::{Config, LogLevel, Parsed, HELP};
use leanftpd::Server;

fn main() {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(c)) => *c,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return;
        }
        Ok(Parsed::Version) => {
            println!("leanftpd {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("leanftpd: {e}");
            std::process::exit(2);
        }
    };
    let level = match config.log_level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
    };
    let log_config = simplelog::ConfigBuilder::new().set_time_format_rfc3339().set_target_level(log::LevelFilter::Off).build();
    let _ = simplelog::SimpleLogger::init(level, log_config);
    let mut server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leanftpd: {e}");
            std::process::exit(if e.0.starts_with("cannot listen") { 1 } else { 2 });
        }
    };
    if let Err(e) = server.handle_signals() {
        eprintln!("leanftpd: cannot install signal handlers: {e}");
        std::process::exit(1);
    }
    if let Err(e) = server.run() {
        eprintln!("leanftpd: {e}");
        std::process::exit(1);
    }
}
