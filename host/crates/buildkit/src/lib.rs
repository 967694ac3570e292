//! caulk's BuildKit client: the Control service subset caulk needs (Solve,
//! Status, ListWorkers, Info, Session), LLB built from hand-written `prost`
//! messages, and Copa's ways of reaching a daemon.
//!
//! ```no_run
//! use caulk_buildkit::{Address, Client, ConnectOptions, DockerApi, Network, Step};
//! # fn main() -> caulk_buildkit::Result<()> {
//! let addr = Address::resolve(None, std::env::var("BUILDKIT_HOST").ok().as_deref())?;
//! let client = Client::connect(&addr, &ConnectOptions::default())?;
//! let mut log = |event| println!("{event:?}");
//!
//! // (a) probes: output and exit code of commands on the image
//! let probe = Step { args: vec!["dpkg-query".into(), "-W".into()], ..Step::default() };
//! let answers = client.probe_all("caulk/app:1", &[], &[probe], &mut log)?;
//!
//! // (b) a chain of steps, exported into the Engine's store as a name that
//! // caulk-image's `docker-daemon:` transport reads back (Address::docker_host
//! // is its DOCKER_HOST); the layers after the original ones are the steps'.
//! let step = Step { args: vec!["apt-get".into(), "update".into()], network: Network::Host, ..Step::default() };
//! let built = client.run_chain("caulk/app:1", &[step], "caulk-tmp/app:patched", &mut log)?;
//! // ... read `docker-daemon:{built.name}` ...
//! DockerApi::for_address(&addr, "removing the result")?.remove(&built.name)?;
//! # let _ = answers;
//! # Ok(())
//! # }
//! ```
//!
//! Everything public is synchronous: each client owns a small tokio runtime.
//! Do not call into this crate from a tokio worker thread.

mod addr;
mod client;
mod connect;
mod docker;
mod error;
pub mod filesync;
pub mod llb;
pub mod pb;
mod progress;
mod run;
mod session;

pub use addr::{Address, DEFAULT_ADDRESS, DOCKER_DEFAULT_SOCKET};
pub use client::Client;
pub use connect::ConnectOptions;
pub use docker::DockerApi;
pub use error::{Error, Result};
pub use filesync::{Entry, FsError, Kind, Sink, Tree};
pub use llb::{CacheMount, Network, Sharing};
pub use pb::llb::ProxyEnv;
pub use progress::{Event, Follow, STOP_POLL, Stream, Tracker};
pub use run::{Base, Built, CaBundle, Local, ProbeOutput, Step, ToolingImage, exit_code};
pub use session::Credentials;
