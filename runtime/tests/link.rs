//! Linking the instruction bitstreams of every compiled test model (PROTOCOL.md §4): each field
//! holds its buffer's address half afterwards, every other bit is unchanged, fields of absent
//! buffers stay untouched, and a field naming an unknown activation is an error.

mod common;

use edgetpu::package::{read_bits, BufferAddresses, Description, Package, Position};
use edgetpu::Model;

#[test]
fn every_field_of_every_compiled_model_links() {
    let mut fields = 0;
    for rel in common::all_models().iter().filter(|r| r.ends_with("_edgetpu.tflite")) {
        let model = Model::open(common::testdata().join(rel)).unwrap();
        for pkg in Package::all(&model).unwrap() {
            for exe in &pkg.executables {
                let addr = exe.tag_addresses(0x8000_0000_0000_0000 | 0x1234_5678);
                let linked = exe.link(&addr).unwrap_or_else(|e| panic!("{rel}: {e}"));
                assert_eq!(linked.len(), exe.bitstreams.len());
                for (bs, out) in exe.bitstreams.iter().zip(&linked) {
                    assert_eq!(out.len(), bs.data.len());
                    let mut covered = vec![false; bs.data.len() * 8];
                    for f in &bs.field_offsets {
                        let want = match addr.resolve(f).unwrap() {
                            Some(a) if f.position == Position::Lower32 => a as u32,
                            Some(a) => (a >> 32) as u32,
                            None => read_bits(bs.data, f.offset_bit).unwrap(),
                        };
                        assert_eq!(read_bits(out, f.offset_bit).unwrap(), want, "{rel}: {f:?}");
                        covered[f.offset_bit..f.offset_bit + 32].iter_mut().for_each(|c| *c = true);
                        fields += 1;
                    }
                    for (bit, _) in covered.iter().enumerate().filter(|(_, c)| !**c) {
                        let (a, b) = (bs.data[bit / 8] >> (bit % 8) & 1, out[bit / 8] >> (bit % 8) & 1);
                        assert_eq!(a, b, "{rel}: bit {bit} outside every field changed");
                    }
                }
                // Linking again into the same buffers with other addresses overwrites the fields.
                let other = exe.tag_addresses(7);
                let mut again = linked.clone();
                exe.link_into(&other, &mut again).unwrap();
                assert_eq!(again, exe.link(&other).unwrap());
            }
        }
    }
    assert!(fields > 100, "only {fields} field offsets in the test data");
}

#[test]
fn a_field_naming_an_unknown_activation_is_an_error() {
    let model = Model::open(common::testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap();
    let pkg = Package::all(&model).unwrap().remove(0);
    let main = pkg.main();
    assert!(main.bitstreams.iter().flat_map(|b| &b.field_offsets).any(|f| f.desc == Description::InputActivation));
    let err = main.link(&BufferAddresses::default()).unwrap_err();
    assert!(err.to_string().contains("\"input\""), "{err}");
}
