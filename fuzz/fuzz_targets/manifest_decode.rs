//! Manifests as the store holds them (`manifest::decode`), into every
//! manifest type and the index's generation record.
//!
//! Decoding arbitrary bytes never panics, and what decodes re-encodes
//! (`manifest::encode`, which must not fail) to bytes that decode to the
//! same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::manifest::{
    ChunkGroup, CollectionManifest, FolderManifest, Generation, MessageChunk, RootManifest, decode,
    encode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    match decode::<T>(data) {
        Ok(value) => {
            let bytes = encode(&value);
            match decode::<T>(&bytes) {
                Ok(again) => assert_eq!(again, value, "{}", String::from_utf8_lossy(&bytes)),
                Err(err) => panic!(
                    "{value:?} re-encodes to bytes that do not decode ({err}): {}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<RootManifest>(data);
    round_trip::<FolderManifest>(data);
    round_trip::<ChunkGroup>(data);
    round_trip::<MessageChunk>(data);
    round_trip::<CollectionManifest>(data);
    round_trip::<Generation>(data);
});
