//! The UID of a calendar object or vCard (`snapshot::dav::item_uid`) and
//! the rewrite a restore makes when the server refuses that UID
//! (`restore::dav::rewrite_uid` with `derived_uid`).
//!
//! Input: `selector item-bytes...`; `selector & 1` picks the kind
//! (0: iCalendar, 1: vCard). Neither function may panic; when the rewrite
//! succeeds, the UID read from its output is the new UID, and the output
//! is read as the same kind again (a restore PUTs it and, on a 412, reads
//! it back by its UID).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::protocol::dav::CollectionKind;
use mailrestore::restore::dav::{derived_uid, rewrite_uid};
use mailrestore::snapshot::dav::item_uid;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let [selector, item @ ..] = data else {
        return;
    };
    let kind = if selector & 1 == 0 {
        CollectionKind::Calendar
    } else {
        CollectionKind::Addressbook
    };
    let Some(old) = item_uid(kind, item) else {
        return;
    };
    let collection =
        Url::parse("http://127.0.0.1:5232/alice%40example.org/work-restored-20261126-1405/")
            .expect("a valid URL");
    let new = derived_uid(&old, &collection, "item.ics");
    if let Some(rewritten) = rewrite_uid(kind, item, &old, &new) {
        let text = String::from_utf8_lossy(&rewritten);
        assert_eq!(
            item_uid(kind, &rewritten).as_deref(),
            Some(new.as_str()),
            "old UID {old:?}, rewritten:\n{text}"
        );
    }
});
