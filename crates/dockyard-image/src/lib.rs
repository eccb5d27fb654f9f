//! dockyard-image: the container image model, the local content store,
//! docker archives and OCI layouts, and reproducible layer authoring.
//! No network code lives here.

pub mod atomic;
pub mod blob_writer;
pub mod compress;
pub mod descriptor;
pub mod digest;
pub mod error;
pub mod image;
pub mod index;
pub mod layer;
pub mod manifest;
pub mod media;
pub mod mutate;
pub mod paths;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod store;
pub mod tar;
pub mod transport;

pub use descriptor::Descriptor;
pub use digest::Digest;
pub use error::{Error, Result};
pub use image::Image;
pub use index::{Index, IndexManifest};
pub use layer::{BlobSource, Layer, RemoteBlobs};
pub use manifest::{Artifact, Manifest};
pub use mutate::ConfigEdit;
pub use platform::Platform;
pub use reference::Reference;
pub use store::Store;
pub use transport::Location;
