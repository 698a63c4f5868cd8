//! What the network costs in memory, counted by the allocator. Its own test
//! binary, so the count holds only what the test itself allocates.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use clusternet::{
    model::{Actor, ActorKind, Change, Channel, Cluster, LinkKind, SegmentSet, Validity},
    network::{EdgeKey, LinkData, Network},
};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test while it counts: the count is the whole process's.
static COUNTING_ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

const ACTORS: u32 = 20_000;
const PER_ACTOR: u32 = 10;

/// A network of `ACTORS` firms in one cluster, without links.
fn firms() -> Network {
    let mut network = Network::default();
    let cluster = Cluster {
        id: "c".into(),
        name: "Cluster".into(),
        region: "Region".into(),
        country: None,
        industry: "C2930".into(),
        sites: Vec::new(),
    };
    let actors = (0..ACTORS).map(|i| {
        Change::UpsertActor(Actor {
            id: format!("a{i}").into(),
            name: format!("Firm {i}"),
            kind: ActorKind::Firm,
            industry: "C2930".into(),
            segments: SegmentSet::default(),
            cluster_ids: vec!["c".into()],
            site_id: None,
            country: None,
            employees: None,
            revenue: None,
            validity: Validity::default(),
        })
    });
    network
        .apply(
            &std::iter::once(Change::UpsertCluster(cluster))
                .chain(actors)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    network
}

/// About `ACTORS * PER_ACTOR` links in key order, as a checkpoint holds them.
fn link_rows() -> Vec<(EdgeKey, LinkData)> {
    let data = LinkData {
        channel: Channel::Physical,
        weight: 1.0,
        validity: Validity::default(),
    };
    (0..ACTORS)
        .flat_map(|s| {
            (1..=PER_ACTOR).map(move |d| EdgeKey {
                source: s,
                target: (s + d * 7) % ACTORS,
                kind: LinkKind::Supply,
            })
        })
        .filter(|k| k.source != k.target)
        .map(|k| (k, data))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

/// A link of the restored network costs its entry in the links map (48 bytes)
/// and in the reverse index (12), with little to spare: the maps' leaves are
/// full. Inserted in key order one by one, as before, they took 140 bytes a
/// link, every leaf half empty.
#[test]
fn a_restored_link_costs_little_more_than_its_entries() {
    let _alone = COUNTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut network = firms();
    let rows = link_rows();
    rayon::join(|| (), || ()); // the thread pool's own allocations are not the links'
    let before = held();
    network.restore_links(&rows).unwrap();
    let per_link = (held() - before) as f64 / rows.len() as f64;
    assert_eq!(network.links.len(), rows.len());
    assert!(
        per_link < 75.0,
        "a restored link holds {per_link:.1} bytes; full leaves hold about 64"
    );
}

/// Batches leave the maps' leaves part empty; a bulk load in key order, half
/// empty. Repacked, the network's links cost what restored ones do.
#[test]
fn a_repacked_network_costs_what_a_restored_one_does() {
    let _alone = COUNTING_ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut network = firms();
    let rows = link_rows();
    rayon::join(|| (), || ()); // the thread pool's own allocations are not the links'
    let before = held();
    for part in rows.chunks(5_000) {
        let batch: Vec<Change> = part
            .iter()
            .map(|(key, data)| Change::UpsertLink(network.link_from(key, data)))
            .collect();
        network.apply(&batch).unwrap();
    }
    let per_link = |bytes: isize| bytes as f64 / rows.len() as f64;
    let loaded = per_link(held() - before);
    let repacked = network.repacked();
    drop(network);
    let compact = per_link(held() - before);
    assert_eq!(repacked.links.len(), rows.len());
    assert!(loaded > 100.0, "loaded in batches, a link holds {loaded:.1} bytes");
    assert!(
        compact < 75.0,
        "repacked, a link holds {compact:.1} bytes; full leaves hold about 64"
    );
}
