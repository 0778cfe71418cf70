//! Typed Avro handlers under the native shim: a v1 reader reads v1 and v2 records, and bad
//! records are record errors, not traps.

use rill_guest::avro::apache_avro::{self, types::Value};
use rill_guest::prelude::*;
use rill_guest::schema;
use rill_guest::testing::{self, BatchBuilder};

rill_guest::reader_schema!(ORDER_V1, "orders-value", "schemas/order_v1.avsc");
rill_guest::writer_schema!(ORDER_OUT, "orders-out-value", "schemas/order_v2.avsc");

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Order {
    order_id: String,
    customer: String,
    total_cents: i64,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let o: Order = rec.decode_avro(&ORDER_V1)?;
    ctx.emit_json("out", None, &o)
}

fn encode(text: &str, fields: &[(&str, Value)]) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(text).unwrap();
    let record = Value::Record(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    );
    let w = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    w.write_value_to_vec(record).unwrap()
}

#[test]
fn a_v1_reader_reads_v1_and_v2_and_reports_bad_records() {
    let v1 = include_str!("../schemas/order_v1.avsc");
    let v2 = include_str!("../schemas/order_v2.avsc");
    let id1 = testing::register_schema("orders-value", v1);
    let id2 = testing::register_schema("orders-value", v2);
    let s = |x: &str| Value::String(x.into());
    let r1 = encode(
        v1,
        &[
            ("order_id", s("o-1")),
            ("customer", s("ada")),
            ("total_cents", Value::Long(1250)),
        ],
    );
    let r2 = encode(
        v2,
        &[
            ("order_id", s("o-2")),
            ("customer_name", s("bob")),
            ("total_cents", Value::Long(99)),
            ("currency", s("USD")),
        ],
    );
    let mut b = BatchBuilder::new(0);
    b.push(None, Some(&schema::frame(id1, &r1)));
    b.push(None, Some(&schema::frame(id2, &r2)));
    let out = testing::run(&b.finish(), 0, on_record);
    assert!(out.failure.is_none(), "{:?}", out.failure);
    let got: Vec<Order> = out
        .emits
        .iter()
        .map(|e| serde_json::from_slice(e.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(got[0].customer, "ada");
    assert_eq!(got[1].customer, "bob");
    assert_eq!(got[1].total_cents, 99);

    for (bad, why) in [
        (b"{\"order_id\":1}".to_vec(), "not schema-framed"),
        (schema::frame(999, &r1), "999 is not registered"),
        (schema::frame(id1, &r1[..3]), "cannot read Avro data"),
    ] {
        let mut b = BatchBuilder::new(5);
        b.push(None, Some(&bad));
        let out = testing::run(&b.finish(), 0, on_record);
        let (offset, msg) = out.failure.expect("a record error");
        assert_eq!(offset, 5);
        assert!(msg.contains(why), "{msg}");
    }
}

#[test]
fn emit_avro_frames_with_the_registered_id() {
    #[derive(Serialize)]
    struct Out<'a> {
        order_id: &'a str,
        customer_name: &'a str,
        total_cents: i64,
        currency: &'a str,
    }
    let mut b = BatchBuilder::new(0);
    b.push(None, Some(b"x"));
    let out = testing::run(&b.finish(), 0, |_rec, ctx| {
        let v = Out {
            order_id: "o",
            customer_name: "c",
            total_cents: 1,
            currency: "EUR",
        };
        ctx.emit_avro("out", None, &ORDER_OUT, &v)
    });
    assert!(out.failure.is_none(), "{:?}", out.failure);
    let value = out.emits[0].value.clone().unwrap();
    let (id, _) = schema::split(&value).unwrap();
    assert_eq!(
        id,
        testing::register_schema("orders-out-value", ORDER_OUT.text())
    );
}

#[test]
fn defaults_and_promotions_still_resolve() {
    // The reader wants a field the writer lacks (default) and a long the writer wrote as int.
    rill_guest::reader_schema!(WIDE, "wide-value", "schemas/wide_reader.avsc");
    #[derive(Deserialize)]
    struct Wide {
        n: i64,
        tag: String,
    }
    let writer = r#"{"type":"record","name":"W","fields":[{"name":"n","type":"int"}]}"#;
    let id = testing::register_schema("wide-value", writer);
    let bytes = encode(writer, &[("n", Value::Int(7))]);
    let w: Wide = rill_guest::avro::decode(&WIDE, &schema::frame(id, &bytes)).unwrap();
    assert_eq!((w.n, w.tag.as_str()), (7, "none"));
}
