//! Parse throughput: writes 200,000 small entries, then reads them back on one core.
//!
//! `cargo run --release -p chukan-replica-list --example parse_bench [entries]`

use chrono::NaiveDate;
use chukan_layout::ItemValue;
use chukan_replica_list::{EntrySpec, Limits, ListReader, ListWriter, Operation};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let xml = generate(count)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;

    for round in 1..=3 {
        let started = Instant::now();
        let (entries, defects) = runtime.block_on(async {
            let reader = tokio::io::BufReader::with_capacity(64 * 1024, &xml[..]);
            let mut list = ListReader::new(reader, Limits::default());
            let (mut entries, mut defects) = (0u64, 0u64);
            while let Some(entry) = list.next_entry().await? {
                entries += 1;
                defects += entry.defects.len() as u64;
            }
            Ok::<_, chukan_replica_list::ListError>((entries, defects))
        })?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {entries} entries ({defects} defects), {:.1} MB in {secs:.3} s: {:.0} entries/s, {:.0} MB/s",
            xml.len() as f64 / 1e6,
            entries as f64 / secs,
            xml.len() as f64 / 1e6 / secs,
        );
    }
    Ok(())
}

fn generate(count: u64) -> std::io::Result<Vec<u8>> {
    let started = Instant::now();
    let mut writer = ListWriter::new(Vec::with_capacity(count as usize * 900))?;
    let updated = NaiveDate::from_ymd_opt(2017, 3, 1);
    for i in 0..count {
        let payload = vec![
            ItemValue {
                code: "I0001".into(),
                value: Some(format!("{}", 1000 + i % 9000)),
                version: Some("0002".into()),
                updated,
                null_reason: None,
            },
            ItemValue {
                code: "I0002".into(),
                value: Some("2017-02-28".into()),
                version: None,
                updated: None,
                null_reason: None,
            },
            ItemValue {
                code: "I0003".into(),
                value: None,
                version: None,
                updated: None,
                null_reason: Some("NotAcceptable".into()),
            },
        ];
        let record_id = format!("R20180701{i:08}");
        let addressee = format!("{:015}", i);
        let record_key = format!("K-{i}-1");
        writer.write(&EntrySpec {
            operation: if i % 10 == 9 {
                Operation::Delete
            } else {
                Operation::Register
            },
            record_id: &record_id,
            addressee: &addressee,
            info_code: "TM00000000000031",
            dataset: "0101",
            record_key: &record_key,
            major_version: "0002",
            parent_record_key: None,
            public_start: NaiveDate::from_ymd_opt(2018, 7, 2),
            public_end: None,
            payload: &payload,
        })?;
    }
    let xml = writer.finish()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {count} entries, {:.1} MB in {secs:.3} s: {:.0} entries/s",
        xml.len() as f64 / 1e6,
        count as f64 / secs
    );
    Ok(xml)
}
