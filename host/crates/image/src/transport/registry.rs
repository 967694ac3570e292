//! Registry transport (placeholder while the local transports land).
use super::{BlobDesc, ImageDestination, ImageSource, RawManifest};
use crate::error::{Error, Result};
use crate::reference::RegistryRef;
use std::io::Read;

#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {}

pub struct RegistrySource;
impl RegistrySource {
    pub fn open(r: &RegistryRef, _: &RegistryOptions) -> Result<Self> {
        Err(Error::Unsupported { transport: "docker".into(), what: r.to_string() })
    }
}
impl ImageSource for RegistrySource {
    fn origin(&self) -> String {
        String::new()
    }
    fn top(&self) -> Result<RawManifest> {
        unreachable!()
    }
    fn blob(&self, _: &BlobDesc) -> Result<Box<dyn Read + Send>> {
        unreachable!()
    }
}
pub struct RegistryDestination;
impl RegistryDestination {
    pub fn open(r: &RegistryRef, _: &RegistryOptions) -> Result<Self> {
        Err(Error::Unsupported { transport: "docker".into(), what: r.to_string() })
    }
}
impl ImageDestination for RegistryDestination {
    fn origin(&self) -> String {
        String::new()
    }
    fn has_blob(&mut self, _: &BlobDesc) -> Result<bool> {
        unreachable!()
    }
    fn put_blob(&mut self, _: &BlobDesc, _: &mut dyn Read) -> Result<()> {
        unreachable!()
    }
    fn put_manifest(&mut self, _: &RawManifest) -> Result<()> {
        unreachable!()
    }
    fn commit(self: Box<Self>, _: &RawManifest) -> Result<()> {
        unreachable!()
    }
}
