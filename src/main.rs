//! The `leanftpd` binary: command line → logging → `leanftpd::run`.
//! Exit codes: 0 clean shutdown, 1 runtime error, 2 usage or configuration.

use leanftpd::config::{help, Config, Parsed};

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
    let level = config.log_level.filter();
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
    // The logger passes every level; `log::set_max_level` filters, so that
    // SIGHUP can raise `log-level` as well as lower it.
    let _ = simplelog::SimpleLogger::init(log::LevelFilter::Trace, log_config.build());
    log::set_max_level(level);
    if let Err(e) = leanftpd::run(config) {
        eprintln!("leanftpd: {e}");
        std::process::exit(e.exit_code());
    }
}
