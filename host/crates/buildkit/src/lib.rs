//! caulk's BuildKit client: the Control service subset caulk needs (Solve,
//! Status, ListWorkers, Info, Session), LLB built from hand-written `prost`
//! messages, and Copa's ways of reaching a daemon.
//!
//! ```no_run
//! use caulk_buildkit::pb::fsutil::Stat;
//! use caulk_buildkit::{Address, Client, ConnectOptions, Network, Sink, Step};
//!
//! /// Lists the result's entries and asks for no file data.
//! struct Listing(Vec<String>);
//!
//! impl Sink for Listing {
//!     fn entry(&mut self, _: u32, stat: &Stat) -> Result<bool, String> {
//!         self.0.push(stat.path.clone());
//!         Ok(false)
//!     }
//!     fn data(&mut self, _: u32, _: &[u8]) -> Result<(), String> {
//!         Err("no data was asked for".into())
//!     }
//!     fn file_done(&mut self, _: u32) -> Result<(), String> {
//!         Ok(())
//!     }
//!     fn finish(&mut self) -> Result<(), String> {
//!         println!("{} entries", self.0.len());
//!         Ok(())
//!     }
//!     fn budget(&self) -> u64 {
//!         0
//!     }
//! }
//!
//! # fn main() -> caulk_buildkit::Result<()> {
//! let addr = Address::resolve(None, std::env::var("BUILDKIT_HOST").ok().as_deref())?;
//! let client = Client::connect(&addr, &ConnectOptions::default())?;
//! let mut log = |event| println!("{event:?}");
//!
//! // (a) probes: output and exit code of commands on the image
//! let probe = Step { args: vec!["dpkg-query".into(), "-W".into()], ..Step::default() };
//! let answers = client.probe_all("caulk/app:1", &[], &[probe], &mut log)?;
//!
//! // (b) a chain of steps whose resulting root fs streams into a `Sink`
//! // (the `local` exporter through caulk's session); a local image goes
//! // in the other way, as a tree shared with `Client::share`.
//! let step = Step { args: vec!["apt-get".into(), "update".into()], network: Network::Host, ..Step::default() };
//! client.export_chain("caulk/app:1", &[step], Box::new(Listing(Vec::new())), &mut log)?;
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
pub use error::{Error, Result};
pub use filesync::{Entry, FsError, Kind, Sent, Sink, Tree};
pub use llb::{CacheMount, Network, Sharing};
pub use pb::llb::ProxyEnv;
pub use progress::{Event, Follow, STOP_POLL, Stream, Tracker};
pub use run::{Base, CaBundle, Local, ProbeOutput, Step, ToolingImage, exit_code};
pub use session::Credentials;
