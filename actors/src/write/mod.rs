//! The write path: the produce buffer collects batches of every partition into one open
//! object, the uploader PUTs sealed objects and hands each partition its slice in seal
//! order, the index writer group-commits the partitions' appends into the metadata store.

pub(crate) mod index_writer;
pub(crate) mod produce_buffer;
pub(crate) mod uploader;

#[cfg(test)]
mod uploader_tests;
