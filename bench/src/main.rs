fn main() { eprintln!("leanftpd-bench: the load generator lands with issue 3"); std::process::exit(2); }
