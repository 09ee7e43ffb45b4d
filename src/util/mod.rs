//! Small pieces every layer uses: the shutdown signal, the shared counters, files kept private,
//! compressed input decoded, a replay's progress bar, the HTTP proxy from the environment, the system calls std lacks,
//! UTC time formatting, and cutting outside text to length.

pub mod compressed;
pub mod private;
pub mod progress;
pub mod proxy;
pub mod shutdown;
pub mod stats;
pub mod sys;
pub mod text;
pub mod time;
