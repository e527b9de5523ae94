//! r1-model
