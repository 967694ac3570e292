//! caulk's BuildKit client: the Control service subset caulk needs (Solve,
//! Status, ListWorkers, Info), LLB built from hand-written `prost` messages,
//! and the Docker Engine calls that read a `moby` export back.
//!
//! ```no_run
//! use caulk_buildkit::{Address, Client, DockerApi, Network, Step, ConnectOptions};
//! # fn main() -> caulk_buildkit::Result<()> {
//! let addr = Address::resolve(None, std::env::var("BUILDKIT_HOST").ok().as_deref())?;
//! let client = Client::connect(&addr, &ConnectOptions::default())?;
//! let mut log = |event| println!("{event:?}");
//!
//! // (a) a probe: output and exit code of one command on the image
//! let probe = Step { args: vec!["dpkg-query".into(), "-W".into()], ..Step::default() };
//! let out = client.probe("caulk/app:1", &[], &probe, &mut log)?;
//!
//! // (b) a chain of steps, exported into the Engine's store, read back
//! let step = Step { args: vec!["apt-get".into(), "update".into()], network: Network::Host, ..Step::default() };
//! let built = client.run_chain("caulk/app:1", &[step], "caulk-tmp/app:patched", &mut log)?;
//! let docker = DockerApi::for_address(&addr, "reading the result")?;
//! let saved = docker.save_image(&built.name, std::path::Path::new("/var/tmp"))?;
//! let original_diff_ids: Vec<String> = Vec::new(); // from caulk's own read of the image
//! for layer in saved.layers_after(&original_diff_ids)? {
//!     let _tar = saved.open_layer(layer)?;
//! }
//! docker.remove(&built.name)?;
//! # let _ = out;
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
pub mod llb;
pub mod pb;
mod progress;
mod run;
mod saved;
mod session;

pub use addr::{Address, DEFAULT_ADDRESS, DOCKER_DEFAULT_SOCKET};
pub use client::Client;
pub use connect::ConnectOptions;
pub use docker::DockerApi;
pub use error::{Error, Result};
pub use llb::{CacheMount, Network, Sharing};
pub use pb::llb::ProxyEnv;
pub use progress::{Event, Stream, Tracker};
pub use run::{Built, CaBundle, ProbeOutput, Step};
pub use saved::{SavedImage, SavedLayer};
pub use session::Credentials;
