//! Native test helpers: build a plugin crate into a component and run it
//! through the real `caulk` host.
