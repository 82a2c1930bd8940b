//! Shares with roles, through the gRPC services of a real server on loopback, on SQLite
//! and (when configured) PostgreSQL: the permission matrix of every operation against
//! every kind of caller, re-shares that cannot escalate, revokes that cascade and end
//! the revoked user's Watch stream, root names with a suffix, and bad input.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Kind;
use common::grpc::{commit_new, dir, file, put, share, upload};
use common::world::World;
use futures::StreamExt;
use futures::stream::BoxStream;
use loft_remote::client::GrpcClient;

use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, NodeKind, Role, watch_event::Event};
use loft_remote::{RemoteClient, RemoteResult};

const DEADLINE: Duration = Duration::from_secs(5);

/// Reads every chunk of `manifest`; the first error if any.
async fn read_chunks(client: &GrpcClient, manifest: &proto::Manifest) -> RemoteResult<Vec<u8>> {
    let ranges = manifest
        .chunks
        .iter()
        .map(|chunk| proto::ChunkRange {
            id: chunk.id.clone(),
            offset: 0,
            length: 0,
        })
        .collect();
    let mut stream = client.get_chunks(ranges).await?;
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        data.extend(
            loft_remote::content::decode(&piece.data, piece.compressed, piece.length as usize)
                .expect("decoding a chunk"),
        );
    }
    Ok(data)
}

type Events = BoxStream<'static, RemoteResult<proto::WatchEvent>>;

/// Reads `events` until a caught-up marker; returns the changes before it.
async fn until_caught_up(events: &mut Events) -> Vec<proto::Change> {
    tokio::time::timeout(DEADLINE, async {
        let mut changes = Vec::new();
        while let Some(event) = events.next().await {
            match event.expect("watch event").event {
                Some(Event::Change(change)) => changes.push(change),
                Some(Event::CaughtUp(_)) => return changes,
                _ => {}
            }
        }
        panic!("the Watch stream ended before catching up");
    })
    .await
    .expect("caught up in time")
}

/// What a call did, as the matrix records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Denied(ErrorKind),
}

use Outcome::{Allowed as A, Denied};
const P: Outcome = Denied(ErrorKind::PermissionDenied);
const N: Outcome = Denied(ErrorKind::NotFound);
const U: Outcome = Denied(ErrorKind::Unauthenticated);

fn outcome<T>(result: RemoteResult<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Allowed,
        Err(e) => Denied(e.kind),
    }
}

/// The callers of the matrix, in the order of its columns: users holding each role on
/// the owner's shared folder, a user it was never shared with, one whose share was
/// revoked, and three public links whose secrets are offered as bearer tokens (a link
/// opens its page on the HTTP gateway and nothing else; see `link_matrix.rs`).
const WHO: [&str; 9] = [
    "owner",
    "editor",
    "commenter",
    "viewer",
    "stranger",
    "revoked",
    "expired link",
    "password link",
    "upload link",
];

/// Expected outcome of each operation for each caller (columns as in [`WHO`]). Items a
/// caller may not see are NOT_FOUND; visible but not allowed is PERMISSION_DENIED.
/// `have_chunks` never fails: "denied" there means the chunk is reported absent.
/// Uploading bytes (`put_chunks`) grants nothing, so any user may. Trash in a shared
/// folder belongs to those who may change it; only its owner empties it for good.
/// Rows run in this order, each row's callers from the last column to the first (so
/// that the owner empties the trash after everyone else has tried).
#[rustfmt::skip]
const MATRIX: &[(&str, [Outcome; 9])] = &[
    //                  owner editor comm. viewer strang. revoked expired password upload
    ("who_am_i",        [A,    A,     A,    A,     A,      A,      U,      U,       U]),
    ("get_quota",       [A,    A,     A,    A,     A,      A,      U,      U,       U]),
    ("list_devices",    [A,    A,     A,    A,     A,      A,      U,      U,       U]),
    ("lookup",          [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("resolve",         [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("stat",            [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("list",            [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("create",          [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("hard_link",       [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("rename",          [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("remove",          [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("remove_batch",    [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("setattr",         [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("set_xattr",       [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("get_xattr",       [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("list_xattr",      [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("remove_xattr",    [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("have_chunks",     [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("put_chunks",      [A,    A,     A,    A,     A,      A,      U,      U,       U]),
    ("get_chunks",      [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("get_manifest",    [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("commit",          [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("commit_batch",    [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("list_versions",   [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("restore_version", [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("list_trash",      [A,    A,     N,    N,     N,      N,      U,      U,       U]),
    ("restore_trash",   [A,    A,     N,    N,     N,      N,      U,      U,       U]),
    ("watch",           [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("share",           [A,    P,     P,    P,     N,      N,      U,      U,       U]),
    ("list_shares",     [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("revoke_share",    [A,    P,     P,    P,     N,      N,      U,      U,       U]),
    ("comment",         [A,    A,     A,    P,     N,      N,      U,      U,       U]),
    ("list_comments",   [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("search",          [A,    A,     A,    A,     N,      N,      U,      U,       U]),
    ("create_link",     [A,    A,     P,    P,     N,      N,      U,      U,       U]),
    ("list_links",      [A,    A,     A,    A,     A,      A,      U,      U,       U]),
    ("revoke_link",     [A,    N,     N,    N,     N,      N,      U,      U,       U]),
    ("empty_trash",     [A,    P,     N,    N,     N,      N,      U,      U,       U]),
];

/// The shared folder the matrix works on, made by the owner.
struct Fixture {
    owner: GrpcClient,
    proj: proto::Node,
    doc: proto::Node,
    manifest: proto::Manifest,
    /// The first version of `doc`, for restores.
    first_version: u64,
    /// Per caller: an item of the folder in the trash, and a link of the owner's.
    trashed: BTreeMap<&'static str, u64>,
    links: BTreeMap<&'static str, u64>,
    /// An item in the folder's trash that only the owner may purge.
    kept_in_trash: u64,
}

fn named(prefix: &str, who: &str) -> String {
    format!("{prefix}-{}", who.replace(' ', "-"))
}

/// Whether `id` is in the trash `client` sees.
async fn in_trash(client: &GrpcClient, id: u64) -> RemoteResult<bool> {
    Ok(client.list_trash().await?.iter().any(|item| item.id == id))
}

/// Runs operation `op` as `who` (its client) on the fixture.
async fn run(op: &str, who: &str, client: &GrpcClient, f: &Fixture) -> Outcome {
    let (proj, doc) = (f.proj.id, f.doc.id);
    let mine = |prefix: &str| named(prefix, who);
    match op {
        "who_am_i" => outcome(client.who_am_i().await),
        "get_quota" => outcome(client.quota().await),
        "list_devices" => outcome(client.list_devices().await),
        "lookup" => outcome(client.lookup(proj, b"doc.txt").await),
        "resolve" => outcome(client.resolve(b"/proj/doc.txt").await),
        "stat" => outcome(client.stat(doc).await),
        "list" => outcome(client.list(proj, b"", 0).await),
        "create" => outcome(client.create(dir(proj, &mine("new"))).await),
        "hard_link" => outcome(client.link(doc, proj, mine("hl").as_bytes()).await),
        "rename" => outcome(
            client
                .rename(proto::RenameRequest {
                    parent: proj,
                    name: mine("r").into_bytes().into(),
                    new_parent: proj,
                    new_name: mine("moved").into_bytes().into(),
                    ..Default::default()
                })
                .await,
        ),
        "remove" => outcome(
            client
                .remove(proto::RemoveRequest {
                    parent: proj,
                    name: mine("x").into_bytes().into(),
                    ..Default::default()
                })
                .await,
        ),
        "remove_batch" => outcome(
            client
                .remove_batch(
                    ["xb1", "xb2"]
                        .map(|prefix| proto::RemoveRequest {
                            parent: proj,
                            name: mine(prefix).into_bytes().into(),
                            ..Default::default()
                        })
                        .to_vec(),
                )
                .await,
        ),
        "setattr" => outcome(
            client
                .set_attr(proto::SetAttrRequest {
                    id: doc,
                    mode: Some(0o640),
                    ..Default::default()
                })
                .await,
        ),
        "set_xattr" => outcome(
            client
                .set_xattr(doc, named("user.k", who).as_bytes(), b"v", 0)
                .await,
        ),
        "get_xattr" => outcome(client.get_xattr(doc, b"user.tag").await),
        "list_xattr" => outcome(client.list_xattr(doc).await),
        "remove_xattr" => outcome(client.remove_xattr(doc, mine("user.rm").as_bytes()).await),
        "have_chunks" => {
            let id = loft_remote::content::ChunkId::from_slice(&f.manifest.chunks[0].id).unwrap();
            match client.have_chunks(&[id]).await {
                Ok(present) if present == [true] => Outcome::Allowed,
                Ok(_) => N,
                Err(e) => Denied(e.kind),
            }
        }
        "put_chunks" => outcome(upload(client, format!("bytes of {who}").as_bytes()).await),
        "get_chunks" => outcome(read_chunks(client, &f.manifest).await),
        "get_manifest" => outcome(client.get_manifest(doc, 0).await),
        "commit" | "commit_batch" => {
            let manifest = match upload(client, format!("{op} of {who}").as_bytes()).await {
                Ok(manifest) => manifest,
                Err(e) => return Denied(e.kind),
            };
            let request = commit_new(proj, &mine(op), &manifest);
            if op == "commit" {
                outcome(client.commit(request).await)
            } else {
                outcome(client.commit_batch(vec![request]).await)
            }
        }
        "list_versions" => outcome(client.list_versions(doc).await),
        "restore_version" => outcome(client.restore_version(doc, f.first_version).await),
        // The trash never fails on what it may not show: "denied" is the item missing.
        "list_trash" => match in_trash(client, f.trashed[who]).await {
            Ok(true) => Outcome::Allowed,
            Ok(false) => N,
            Err(e) => Denied(e.kind),
        },
        "restore_trash" => outcome(
            client
                .restore_trash(proto::RestoreTrashRequest {
                    id: f.trashed[who],
                    ..Default::default()
                })
                .await,
        ),
        // Emptying purges what the caller may purge: "allowed" is the shared folder's
        // item gone; "permission denied" is it still there although the caller sees it.
        "empty_trash" => {
            if let Err(e) = client.empty_trash().await {
                return Denied(e.kind);
            }
            if !in_trash(&f.owner, f.kept_in_trash).await.unwrap() {
                Outcome::Allowed
            } else if in_trash(client, f.kept_in_trash).await.unwrap_or(false) {
                P
            } else {
                N
            }
        }
        "watch" => outcome(client.watch(f.proj.namespace, 0).await),
        "share" => outcome(client.share(share(proj, "pat", Role::Viewer)).await),
        "list_shares" => outcome(client.list_shares(proj).await),
        "revoke_share" => outcome(client.revoke_share(proj, "quinn").await),
        "comment" => outcome(client.add_comment(doc, &format!("a note from {who}")).await),
        "list_comments" => outcome(client.list_comments(doc).await),
        // Search never fails on what it may not show: "denied" is the file not found.
        "search" => match client.search("hello shared world", 0).await {
            Ok(hits) if hits.iter().any(|hit| hit.node == doc) => Outcome::Allowed,
            Ok(_) => N,
            Err(e) => Denied(e.kind),
        },
        "create_link" => outcome(client.create_link(link_request("/proj/doc.txt")).await),
        "list_links" => outcome(client.list_links().await),
        "revoke_link" => outcome(client.revoke_link(f.links[who]).await),
        other => panic!("no operation {other} in the matrix runner"),
    }
}

fn link_request(path: &str) -> proto::CreateLinkRequest {
    proto::CreateLinkRequest {
        path: path.as_bytes().to_vec().into(),
        role: proto::LinkRole::LinkViewer as i32,
        ..Default::default()
    }
}

/// The secret of a link URL (its last path segment).
fn secret_of(reply: &proto::CreateLinkReply) -> String {
    reply.url.rsplit('/').next().unwrap().to_string()
}

async fn permission_matrix(kind: Kind) {
    let world = World::start(kind).await;
    let (owner, session) = world.user("alice").await;
    let mut clients = BTreeMap::new();
    for (who, name) in [
        ("editor", "eddie"),
        ("commenter", "cora"),
        ("viewer", "vic"),
        ("stranger", "sam"),
        ("revoked", "rex"),
    ] {
        clients.insert(who, world.user(name).await.0);
    }
    for name in ["pat", "quinn"] {
        world.user(name).await;
    }
    // The owner's folder: a file with two versions and an xattr, and per-caller entries
    // to rename, remove and restore from the trash, xattrs to remove and links to
    // revoke, so that one caller's success does not change what the next one finds.
    let proj = owner.create(dir(session.root, "proj")).await.unwrap();
    let first = put(&owner, proj.id, "doc.txt", b"hello, shared world").await;
    let doc = first.node.unwrap();
    let again = upload(&owner, b"hello again, shared world").await.unwrap();
    owner
        .commit(proto::CommitRequest {
            node: doc.id,
            base_version: first.version,
            ..commit_new(proj.id, "doc.txt", &again)
        })
        .await
        .unwrap();
    owner.set_xattr(doc.id, b"user.tag", b"t", 0).await.unwrap();
    let mut trashed = BTreeMap::new();
    let mut links = BTreeMap::new();
    for who in WHO {
        for prefix in ["r", "x", "xb1", "xb2", "t"] {
            owner
                .create(file(proj.id, &named(prefix, who)))
                .await
                .unwrap();
        }
        owner
            .set_xattr(doc.id, named("user.rm", who).as_bytes(), b"1", 0)
            .await
            .unwrap();
        let link = owner.create_link(link_request("/proj")).await.unwrap();
        links.insert(who, link.link.unwrap().id);
    }
    owner.create(file(proj.id, "kept")).await.unwrap();
    for (name, role) in [
        ("eddie", Role::Editor),
        ("cora", Role::Commenter),
        ("vic", Role::Viewer),
        ("rex", Role::Editor),
        ("quinn", Role::Viewer),
    ] {
        owner.share(share(proj.id, name, role)).await.unwrap();
    }
    let revoked = owner.revoke_share(proj.id, "rex").await.unwrap();
    assert_eq!(revoked, ["rex"]);
    // Deleted once shared, so in the shared folder's trash (what was deleted before
    // stays in the owner's own).
    for who in WHO {
        trashed.insert(
            who,
            remove_to_trash(&owner, proj.id, &named("t", who)).await,
        );
    }
    let kept_in_trash = remove_to_trash(&owner, proj.id, "kept").await;
    let proj = owner.stat(proj.id).await.unwrap();
    assert_ne!(
        proj.namespace, session.namespace,
        "a shared folder is a namespace"
    );
    // Public links of the folder, whose secrets are offered as gRPC tokens.
    for (who, request) in [
        (
            "expired link",
            proto::CreateLinkRequest {
                expires_in: 1,
                ..link_request("/proj")
            },
        ),
        (
            "password link",
            proto::CreateLinkRequest {
                password: "open sesame".into(),
                ..link_request("/proj")
            },
        ),
        (
            "upload link",
            proto::CreateLinkRequest {
                role: proto::LinkRole::LinkUpload as i32,
                ..link_request("/proj")
            },
        ),
    ] {
        let reply = owner.create_link(request).await.unwrap();
        clients.insert(who, world.client(Some(secret_of(&reply))));
    }
    let f = Fixture {
        owner: owner.clone(),
        manifest: owner.get_manifest(doc.id, 0).await.unwrap(),
        first_version: first.version,
        proj,
        doc,
        trashed,
        links,
        kept_in_trash,
    };
    clients.insert("owner", owner);

    let mut wrong = Vec::new();
    for (op, expected) in MATRIX {
        for (column, who) in WHO.iter().enumerate().rev() {
            let got = run(op, who, &clients[who], &f).await;
            if got != expected[column] {
                wrong.push(format!(
                    "{op} as {who}: expected {:?}, got {got:?}",
                    expected[column]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "permission matrix:\n{}", wrong.join("\n"));
}

/// Removes `name` from folder `parent` (into the trash); its node id.
async fn remove_to_trash(client: &GrpcClient, parent: u64, name: &str) -> u64 {
    let id = client.lookup(parent, name.as_bytes()).await.unwrap().id;
    client
        .remove(proto::RemoveRequest {
            parent,
            name: name.as_bytes().to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    id
}

async fn a_reshare_never_grants_more_than_the_sharer_holds(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (eddie, _) = world.user("eddie").await;
    let (vic, _) = world.user("vic").await;
    let (olivia, _) = world.user("olivia").await;
    let (carl, _) = world.user("carl").await;
    world.user("pat").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    alice
        .share(share(proj.id, "eddie", Role::Editor))
        .await
        .unwrap();
    alice
        .share(share(proj.id, "vic", Role::Viewer))
        .await
        .unwrap();
    alice
        .share(share(proj.id, "olivia", Role::Owner))
        .await
        .unwrap();

    // Below owner, nobody shares, at any role, nor raises its own role.
    for role in [Role::Owner, Role::Editor, Role::Viewer] {
        for (client, who) in [(&eddie, "eddie"), (&vic, "vic")] {
            let error = client.share(share(proj.id, "pat", role)).await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::PermissionDenied, "{who} as {role:?}");
        }
    }
    let error = vic
        .share(share(proj.id, "vic", Role::Editor))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    let error = eddie
        .share(share(proj.id, "eddie", Role::Owner))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);

    // A co-owner re-shares; the editor it made still cannot.
    olivia
        .share(share(proj.id, "carl", Role::Editor))
        .await
        .unwrap();
    let error = carl
        .share(share(proj.id, "pat", Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    // Nor can a co-owner change the owner's role, or an editor revoke anyone else.
    let error = olivia
        .share(share(proj.id, "alice", Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::FailedPrecondition);
    let error = eddie.revoke_share(proj.id, "vic").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);

    let roles: BTreeMap<String, i32> = alice
        .list_shares(proj.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.user, m.role))
        .collect();
    let expected: BTreeMap<String, i32> = [
        ("alice", Role::Owner),
        ("carl", Role::Editor),
        ("eddie", Role::Editor),
        ("olivia", Role::Owner),
        ("vic", Role::Viewer),
    ]
    .into_iter()
    .map(|(u, r)| (u.to_string(), r as i32))
    .collect();
    assert_eq!(
        roles, expected,
        "nothing changed but olivia's share to carl"
    );
}

async fn a_revoke_cascades_to_the_reshares_of_the_revoked(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (olivia, _) = world.user("olivia").await;
    let (dan, _) = world.user("dan").await;
    let (carl, _) = world.user("carl").await;
    let (erin, _) = world.user("erin").await;
    let (frank, _) = world.user("frank").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    alice
        .share(share(proj.id, "olivia", Role::Owner))
        .await
        .unwrap();
    alice
        .share(share(proj.id, "frank", Role::Viewer))
        .await
        .unwrap();
    olivia
        .share(share(proj.id, "carl", Role::Editor))
        .await
        .unwrap();
    olivia
        .share(share(proj.id, "dan", Role::Owner))
        .await
        .unwrap();
    dan.share(share(proj.id, "erin", Role::Viewer))
        .await
        .unwrap();
    for client in [&olivia, &dan, &carl, &erin, &frank] {
        client.resolve(b"/proj").await.unwrap();
    }

    // Only an owner of the item removes others; nobody removes its owner.
    let error = carl.revoke_share(proj.id, "erin").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    let error = olivia.revoke_share(proj.id, "alice").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::FailedPrecondition);

    let mut revoked = alice.revoke_share(proj.id, "olivia").await.unwrap();
    revoked.sort();
    assert_eq!(revoked, ["carl", "dan", "erin", "olivia"]);
    for client in [&olivia, &dan, &carl, &erin] {
        let error = client.resolve(b"/proj").await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound);
        let error = client.stat(proj.id).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound);
        let root = client.resolve(b"/").await.unwrap();
        let listing = client.list(root.id, b"", 0).await.unwrap();
        assert!(listing.entries.is_empty(), "nothing left at the root");
    }
    frank.resolve(b"/proj").await.unwrap();
    let members: Vec<String> = alice
        .list_shares(proj.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(members, ["alice", "frank"]);

    // A member may leave by itself; revoking someone who is not a member is NOT_FOUND.
    assert_eq!(
        frank.revoke_share(proj.id, "frank").await.unwrap(),
        ["frank"]
    );
    let error = alice.revoke_share(proj.id, "frank").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
}

async fn revoking_ends_the_revoked_users_watch_at_once(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (bob, _) = world.user("bob").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    alice
        .share(share(proj.id, "bob", Role::Editor))
        .await
        .unwrap();

    // Bob's feed covers the shared folder: a change there reaches his stream.
    let mut events = bob.watch(0, 0).await.unwrap();
    let before = until_caught_up(&mut events).await;
    assert!(
        before
            .iter()
            .any(|c| c.name.as_ref() == b"proj" && c.kind == proto::ChangeKind::Created as i32),
        "bob's feed has the shared folder's entry at his root"
    );
    let cursor = before.last().map(|c| c.seq).unwrap_or(0);
    alice.create(file(proj.id, "live.txt")).await.unwrap();
    let live = until_caught_up(&mut events).await;
    assert!(live.iter().any(|c| c.name.as_ref() == b"live.txt"));

    alice.revoke_share(proj.id, "bob").await.unwrap();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            if let Err(error) = event {
                return Some(error.kind);
            }
        }
        None
    })
    .await
    .expect("the revoked user's Watch stream did not end");
    assert_eq!(ended, Some(ErrorKind::PermissionDenied));

    // Watching again: the folder's entry is removed, and what happens in it after the
    // revoke never reaches bob.
    alice.create(file(proj.id, "secret.txt")).await.unwrap();
    let mut events = bob.watch(0, cursor).await.unwrap();
    let after = until_caught_up(&mut events).await;
    assert!(
        after
            .iter()
            .any(|c| c.name.as_ref() == b"proj" && c.kind == proto::ChangeKind::Removed as i32)
    );
    assert!(!after.iter().any(|c| c.name.as_ref() == b"secret.txt"));
    let shared_ns = alice.stat(proj.id).await.unwrap().namespace;
    let error = bob.watch(shared_ns, 0).await.err();
    assert_eq!(error.map(|e| e.kind), Some(ErrorKind::NotFound));
}

async fn shared_items_appear_at_the_root_with_a_suffix_when_taken(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    let (bob, bob_session) = world.user("bob").await;
    bob.create(dir(bob_session.root, "proj")).await.unwrap();
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    let sub = alice.create(dir(proj.id, "sub")).await.unwrap();
    let reply = alice
        .share(share(proj.id, "bob", Role::Editor))
        .await
        .unwrap();
    assert_eq!(reply.name.as_ref(), b"proj (2)");

    // Paths inside it address the shared folder, both ways.
    let seen = bob.resolve(b"/proj (2)/sub").await.unwrap();
    assert_eq!(seen.id, sub.id);
    bob.create(file(sub.id, "from-bob")).await.unwrap();
    alice.resolve(b"/proj/sub/from-bob").await.unwrap();
    let names: Vec<Vec<u8>> = bob
        .list(bob_session.root, b"", 0)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.name.to_vec())
        .collect();
    assert_eq!(names, [b"proj".to_vec(), b"proj (2)".to_vec()]);

    // A file can be shared too; a viewer reads it and cannot write it.
    let notes = put(&alice, session.root, "notes.txt", b"read me")
        .await
        .node
        .unwrap();
    let reply = alice
        .share(share(notes.id, "bob", Role::Viewer))
        .await
        .unwrap();
    assert_eq!(reply.name.as_ref(), b"notes.txt");
    let seen = bob.resolve(b"/notes.txt").await.unwrap();
    let manifest = bob.get_manifest(seen.id, 0).await.unwrap();
    assert_eq!(read_chunks(&bob, &manifest).await.unwrap(), b"read me");
    let mine = upload(&bob, b"overwritten").await.unwrap();
    let error = bob
        .commit(proto::CommitRequest {
            node: seen.id,
            base_version: seen.version,
            manifest: Some((&mine).into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);

    // The session lists the memberships, with roles.
    let me = bob.who_am_i().await.unwrap();
    let mut roles: Vec<i32> = me.memberships.iter().map(|m| m.role).collect();
    roles.sort();
    assert_eq!(
        roles,
        [Role::Viewer as i32, Role::Editor as i32, Role::Owner as i32]
    );

    // A member deleting its entry leaves the share; the owner keeps the folder.
    bob.remove(proto::RemoveRequest {
        parent: bob_session.root,
        name: b"proj (2)".to_vec().into(),
        recursive: true,
        ..Default::default()
    })
    .await
    .unwrap();
    alice.resolve(b"/proj/sub/from-bob").await.unwrap();
    assert_eq!(
        bob.stat(proj.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

async fn bad_share_requests_are_refused_and_change_nothing(kind: Kind) {
    let world = World::start(kind).await;
    let (alice, session) = world.user("alice").await;
    world.user("bob").await;
    let proj = alice.create(dir(session.root, "proj")).await.unwrap();
    let sub = alice.create(dir(proj.id, "sub")).await.unwrap();
    let link = alice
        .create(proto::CreateRequest {
            kind: NodeKind::Symlink as i32,
            symlink_target: b"proj".to_vec().into(),
            ..file(session.root, "link")
        })
        .await
        .unwrap();
    let kind_of = |r: RemoteResult<proto::ShareReply>| r.unwrap_err().kind;

    assert_eq!(
        kind_of(alice.share(share(proj.id, "nobody", Role::Viewer)).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(alice.share(share(proj.id, "alice", Role::Viewer)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(proj.id, "bob", Role::Unspecified)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(session.root, "bob", Role::Viewer)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(link.id, "bob", Role::Viewer)).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(alice.share(share(999_999, "bob", Role::Viewer)).await),
        ErrorKind::NotFound
    );
    // None of that shared anything.
    assert_eq!(alice.list_shares(proj.id).await.unwrap().namespace, 0);
    assert_eq!(
        alice.stat(proj.id).await.unwrap().namespace,
        session.namespace
    );

    // Inside a shared folder, only the folder itself is shared again.
    alice
        .share(share(proj.id, "bob", Role::Viewer))
        .await
        .unwrap();
    assert_eq!(
        kind_of(alice.share(share(sub.id, "bob", Role::Editor)).await),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(
        alice.revoke_share(sub.id, "bob").await.unwrap_err().kind,
        ErrorKind::FailedPrecondition
    );

    // Comments: empty or too long is refused; nothing is stored.
    for text in ["", "   ", &"x".repeat(5000)] {
        let error = alice.add_comment(proj.id, text).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
    }
    assert!(alice.list_comments(proj.id).await.unwrap().is_empty());
    let comment = alice.add_comment(proj.id, "  looks good ").await.unwrap();
    assert_eq!(comment.text, "looks good");
    assert_eq!(comment.user, "alice");
}

on_both_backends!(
    permission_matrix,
    a_reshare_never_grants_more_than_the_sharer_holds,
    a_revoke_cascades_to_the_reshares_of_the_revoked,
    revoking_ends_the_revoked_users_watch_at_once,
    shared_items_appear_at_the_root_with_a_suffix_when_taken,
    bad_share_requests_are_refused_and_change_nothing,
);
