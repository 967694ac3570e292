//! Container images: the OCI model, transports, and layers in and out.
