//! The FlexBuffer reader against buffers written by the reference `flexbuffers` crate.

use edgetpu::package::flexbuffer::{FlexRef, FlexType};
use flexbuffers::{Builder, BuilderOptions};
use proptest::prelude::*;

#[test]
fn reads_the_shapes_the_custom_op_uses() {
    let mut b = Builder::new(BuilderOptions::SHARE_NONE);
    let mut m = b.start_map();
    m.push("1", 0i64);
    m.push("4", flexbuffers::Blob(&[7u8; 300][..]));
    m.push("5", -1i64);
    let mut v = m.start_vector("6");
    v.push(18i64);
    v.end_vector();
    let v = m.start_vector("7");
    v.end_vector();
    m.push("name", "edgetpu");
    m.end_map();
    let buf = b.view();
    let map = FlexRef::root(buf).unwrap().as_map().unwrap();
    assert_eq!(map.len(), 6);
    assert_eq!(map.get("1").unwrap().unwrap().as_i64().unwrap(), 0);
    assert_eq!(map.get("5").unwrap().unwrap().as_i64().unwrap(), -1);
    assert_eq!(map.get("4").unwrap().unwrap().as_bytes().unwrap(), &[7u8; 300][..]);
    let chips = map.get("6").unwrap().unwrap().as_vector().unwrap();
    assert_eq!((chips.len(), chips.get(0).unwrap().as_i64().unwrap()), (1, 18));
    assert!(map.get("7").unwrap().unwrap().as_vector().unwrap().is_empty());
    assert_eq!(map.get("name").unwrap().unwrap().as_str().unwrap(), "edgetpu");
    assert!(map.get("missing").unwrap().is_none());
    // Type errors are errors, not panics.
    assert!(map.get("4").unwrap().unwrap().as_i64().is_err());
    assert!(map.get("1").unwrap().unwrap().as_map().is_err());
}

#[test]
fn wide_lengths_and_typed_vectors() {
    // A blob over 64 KiB forces 4-byte widths.
    let big = vec![0x5Au8; 70_000];
    let mut b = Builder::new(BuilderOptions::SHARE_NONE);
    let mut m = b.start_map();
    m.push("4", flexbuffers::Blob(&big[..]));
    m.push("f", 2.5f64);
    m.push("t", true);
    m.end_map();
    let map = FlexRef::root(b.view()).unwrap().as_map().unwrap();
    assert_eq!(map.get("4").unwrap().unwrap().as_bytes().unwrap(), &big[..]);
    assert_eq!(map.get("f").unwrap().unwrap().as_f64().unwrap(), 2.5);
    assert_eq!(map.get("t").unwrap().unwrap().flex_type(), FlexType::Bool);

    let mut b = Builder::new(BuilderOptions::SHARE_NONE);
    b.build_singleton(&[1i32, -2, 3][..]);
    let v = FlexRef::root(b.view()).unwrap().as_vector().unwrap();
    let got: Vec<i64> = (0..v.len()).map(|i| v.get(i).unwrap().as_i64().unwrap()).collect();
    assert_eq!(got, vec![1, -2, 3]);
    assert!(v.get(3).is_err());
}

proptest! {
    #[test]
    fn random_maps_round_trip(entries in proptest::collection::btree_map("[a-z0-9]{1,8}", (any::<i64>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..12)) {
        let mut b = Builder::new(BuilderOptions::SHARE_NONE);
        let mut m = b.start_map();
        for (k, (i, blob)) in &entries {
            let mut v = m.start_vector(k.as_str());
            v.push(*i);
            v.push(flexbuffers::Blob(&blob[..]));
            v.end_vector();
        }
        m.end_map();
        let map = FlexRef::root(b.view()).unwrap().as_map().unwrap();
        prop_assert_eq!(map.len(), entries.len());
        for (k, (i, blob)) in &entries {
            let v = map.get(k).unwrap().unwrap().as_vector().unwrap();
            prop_assert_eq!(v.get(0).unwrap().as_i64().unwrap(), *i);
            prop_assert_eq!(v.get(1).unwrap().as_bytes().unwrap(), &blob[..]);
        }
    }

    #[test]
    fn corrupted_buffers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        // Start from a valid map and corrupt it, plus pure noise.
        let mut b = Builder::new(BuilderOptions::SHARE_NONE);
        let mut m = b.start_map();
        m.push("4", flexbuffers::Blob(&data[..]));
        m.push("1", 0i64);
        m.end_map();
        let mut buf = b.view().to_vec();
        for (at, v) in &flips {
            let n = buf.len();
            buf[at % n] = *v;
        }
        for input in [&buf[..], &data[..]] {
            if let Ok(r) = FlexRef::root(input) {
                if let Ok(map) = r.as_map() {
                    for k in ["1", "4", "x"] {
                        if let Ok(Some(v)) = map.get(k) {
                            let _ = (v.as_i64(), v.as_bytes(), v.as_vector().map(|v| v.len()));
                        }
                    }
                }
                if let Ok(v) = r.as_vector() {
                    for i in 0..v.len().min(4) {
                        let _ = v.get(i).map(|x| x.as_i64());
                    }
                }
            }
        }
    }
}
