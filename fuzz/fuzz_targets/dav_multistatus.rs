//! WebDAV response bodies (`protocol::dav`): the element tree (`xml::parse`),
//! `207 Multi-Status` bodies (`parse_multistatus`) and `DAV:error` bodies
//! (`error_conditions` and the checks built on it). None may panic, and the
//! tree stays within its depth bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::protocol::dav::xml::{Element, parse};
use mailrestore::protocol::dav::{
    error_conditions, is_invalid_sync_token, is_uid_conflict, parse_multistatus,
};

fn depth(e: &Element) -> usize {
    1 + e.children.iter().map(depth).max().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(root) => assert!(depth(&root) <= 64, "the tree is deeper than MAX_DEPTH"),
        Err(err) => {
            let _ = err.to_string();
        }
    }
    match parse_multistatus(data) {
        Ok(multistatus) => {
            for response in &multistatus.responses {
                std::hint::black_box(response);
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
    let conditions = error_conditions(data);
    let uid_conflict = is_uid_conflict(data);
    assert_eq!(
        uid_conflict,
        conditions
            .iter()
            .any(|c| c == "no-uid-conflict" || c == "unique-scheduling-object-resource")
    );
    std::hint::black_box(is_invalid_sync_token(data));
});
