//! `latentlab-diagnostics`: a layer of the latentlab workspace (see `docs/` and the
//! design map). It is built by issue 5 and exposes no API yet; nothing here
//! pretends otherwise.
