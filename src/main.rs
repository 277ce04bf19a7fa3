//! The `leanftpd` binary: command line → logging → `leanftpd::run`.
//! Exit codes: 0 clean shutdown, 1 runtime error, 2 usage or configuration.

use leanftpd::config::{help, Config, LogLevel, Parsed};

fn main() {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(c)) => *c,
        Ok(Parsed::Help) => {
            print!("{}", help());
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
    let mut log_config = simplelog::ConfigBuilder::new();
    log_config.set_time_format_rfc3339().set_target_level(log::LevelFilter::Off);
    if config.workers > 1 {
        // Every line names its worker thread: `(worker 2) [c5 …] connected`
        // (simplelog shows it on records at this level or less severe).
        log_config.set_thread_level(log::LevelFilter::Error).set_thread_mode(simplelog::ThreadLogMode::Names);
    }
    if level < log::LevelFilter::Debug {
        // rustls warns about what a client sent (an IP address as SNI, as
        // lftp does: once per handshake) without saying which session; a
        // handshake that fails is logged by the server with its session.
        log_config.add_filter_ignore_str("rustls");
    }
    let _ = simplelog::SimpleLogger::init(level, log_config.build());
    if let Err(e) = leanftpd::run(config) {
        eprintln!("leanftpd: {e}");
        std::process::exit(e.exit_code());
    }
}
