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

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// A link of the restored network costs its entry in the links map (48 bytes)
/// and in the reverse index (12), with little to spare: the maps' leaves are
/// full. Inserted in key order one by one, as before, they took 140 bytes a
/// link, every leaf half empty.
#[test]
fn a_restored_link_costs_little_more_than_its_entries() {
    const ACTORS: u32 = 20_000;
    const PER_ACTOR: u32 = 10;
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
    let data = LinkData {
        channel: Channel::Physical,
        weight: 1.0,
        validity: Validity::default(),
    };
    let rows: Vec<(EdgeKey, LinkData)> = (0..ACTORS)
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
        .collect();
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
