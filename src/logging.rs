//! Logging set-up for programs that do not configure `log` themselves (and for the C ABI).

/// Installs `env_logger` with a `RUST_LOG`-style filter (`None` reads `RUST_LOG`, default
/// `info`). Calling it again, or after another logger was installed, changes nothing and is not
/// an error.
pub fn init_logging(filter: Option<&str>) {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    if let Some(f) = filter {
        builder.parse_filters(f);
    }
    let _ = builder.try_init();
}
