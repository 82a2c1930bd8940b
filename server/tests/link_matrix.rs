//! The permission matrix of the HTTP gateway: every operation a public link offers
//! (its page, a subfolder's page, a signed download, a Range download, a tampered
//! signature, an upload) against every kind of link, on SQLite and (when configured)
//! PostgreSQL + S3. A link acts as the user who made it, checked on every request, so
//! the links of an owner and an editor work and one made by an editor whose share was
//! later revoked stops working; commenters and viewers cannot make links (the gRPC
//! matrix in `sharing.rs`). Pages that do not exist for a caller answer 404 like a link
//! that never existed.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Kind;
use common::grpc::{dir, put, share};
use common::world::World;
use loft_remote::RemoteClient;
use loft_remote::client::GrpcClient;
use loft_remote::proto::{self, LinkRole, Role};
use reqwest::multipart;
use reqwest::{Client, StatusCode};

const DEADLINE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "open sesame";

/// The kinds of link, in the order of the matrix's columns.
const LINKS: [&str; 9] = [
    "owner's",
    "editor's",
    "revoked editor's",
    "right password",
    "wrong password",
    "expired",
    "upload-only",
    "revoked",
    "used up",
];

/// What a request showed: a folder listing with the expected file, the password form,
/// the upload form, or else the HTTP status.
#[rustfmt::skip]
const MATRIX: &[(&str, [&str; 9])] = &[
    //                 owner's   editor's  rev.ed. right     wrong     expired upload    revoked used up
    ("page",          ["listed", "listed", "404",  "listed", "403",    "404",  "upload", "404",  "404"]),
    ("subfolder",     ["listed", "listed", "404",  "listed", "ask",    "404",  "404",    "404",  "404"]),
    ("download",      ["200",    "200",    "404",  "200",    "403",    "404",  "403",    "404",  "404"]),
    ("range",         ["206",    "206",    "404",  "206",    "403",    "404",  "403",    "404",  "404"]),
    ("tampered",      ["403",    "403",    "403",  "403",    "403",    "403",  "403",    "403",  "403"]),
    ("upload",        ["404",    "404",    "404",  "404",    "404",    "404",  "200",    "404",  "404"]),
];

/// One link of the matrix.
struct Link {
    id: u64,
    secret: String,
    /// A signed download URL of `proj/doc.txt`, taken while the link was live.
    download: Option<String>,
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// Every `href` of a download button in `html`, unescaped.
fn download_hrefs(html: &str) -> Vec<String> {
    html.split("<a class=\"button\"")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find("href=\"")? + 6;
            let end = start + rest[start..].find('"')?;
            Some(rest[start..end].replace("&amp;", "&"))
        })
        .collect()
}

struct Fixture {
    world: World,
    http: Client,
    owner: GrpcClient,
    links: BTreeMap<&'static str, Link>,
    content: Vec<u8>,
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("http://{}{path}", self.world.http)
        }
    }

    /// Where a visitor of link `which` gets in: its page, or for a password link the
    /// page the password leads to; the response of the last step.
    async fn enter(&self, which: &str) -> (String, reqwest::Response) {
        let link = &self.links[which];
        let page = self.url(&format!("/l/{}", link.secret));
        let password = match which {
            "right password" => PASSWORD,
            "wrong password" => "open barley",
            _ => {
                let response = self.http.get(&page).send().await.unwrap();
                return (page, response);
            }
        };
        let response = self
            .http
            .post(&page)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("password={}", password.replace(' ', "+")))
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::SEE_OTHER {
            return (page, response);
        }
        let granted = self.url(response.headers()["location"].to_str().unwrap());
        let response = self.http.get(&granted).send().await.unwrap();
        (granted, response)
    }

    /// How a page answered, as the matrix records it.
    async fn shown(response: reqwest::Response, expected_file: &str) -> (String, String) {
        let status = response.status();
        let html = response.text().await.unwrap();
        let what = if status != StatusCode::OK {
            status.as_u16().to_string()
        } else if html.contains("type=\"password\"") {
            "ask".into()
        } else if html.contains("enctype=\"multipart/form-data\"") {
            "upload".into()
        } else if html.contains(expected_file) {
            "listed".into()
        } else {
            format!("200 without {expected_file}")
        };
        (what, html)
    }

    /// The download URL a visitor of `which` has for `doc.txt`: from the page when it
    /// lists it, else the one taken while the link was live, else a guess.
    async fn download_url(&self, which: &str) -> String {
        let (_, response) = self.enter(which).await;
        let (_, html) = Self::shown(response, "doc.txt").await;
        let link = &self.links[which];
        if let Some(href) = download_hrefs(&html)
            .into_iter()
            .find(|h| h.contains("doc.txt"))
        {
            return self.url(&href);
        }
        match &link.download {
            Some(url) => url.clone(),
            None => self.url(&format!(
                "/d/{}/doc.txt?exp=99999999999&sig={}",
                link.id,
                "0".repeat(64)
            )),
        }
    }

    async fn run(&self, op: &str, which: &str) -> String {
        match op {
            "page" => Self::shown(self.enter(which).await.1, "doc.txt").await.0,
            "subfolder" => {
                let (entry, _) = self.enter(which).await;
                let sub = match entry.split_once('?') {
                    Some((path, query)) => format!("{path}/sub?{query}"),
                    None => format!("{entry}/sub"),
                };
                let response = self.http.get(&sub).send().await.unwrap();
                Self::shown(response, "inner.txt").await.0
            }
            "download" => {
                let response = self.http.get(self.download_url(which).await).send().await;
                let response = response.unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                if status == StatusCode::OK {
                    assert_eq!(body.as_ref(), self.content.as_slice(), "{which}");
                }
                status.as_u16().to_string()
            }
            "range" => {
                let url = self.download_url(which).await;
                let response = self.http.get(url).header("Range", "bytes=3-9").send().await;
                let response = response.unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                if status == StatusCode::PARTIAL_CONTENT {
                    assert_eq!(body.as_ref(), &self.content[3..10], "{which}");
                }
                status.as_u16().to_string()
            }
            "tampered" => {
                let url = tampered(&self.download_url(which).await);
                let response = self.http.get(url).send().await.unwrap();
                response.status().as_u16().to_string()
            }
            "upload" => {
                let link = &self.links[which];
                let name = format!("from {which}.txt");
                let form = multipart::Form::new().part(
                    "file",
                    multipart::Part::bytes(b"dropped".to_vec()).file_name(name.clone()),
                );
                let response = self
                    .http
                    .post(self.url(&format!("/u/{}", link.secret)))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                // Whatever the answer, the folder holds the file exactly when it was 200.
                let stored = self
                    .owner
                    .resolve(format!("/proj/{name}").as_bytes())
                    .await
                    .is_ok();
                assert_eq!(stored, status == StatusCode::OK, "upload through {which}");
                status.as_u16().to_string()
            }
            other => panic!("no operation {other} in the matrix runner"),
        }
    }
}

/// `url` with the last character of its signature changed.
fn tampered(url: &str) -> String {
    let (kept, last) = url.split_at(url.len() - 1);
    format!("{kept}{}", if last == "0" { "1" } else { "0" })
}

async fn make_link(client: &GrpcClient, request: proto::CreateLinkRequest) -> Link {
    let reply = client.create_link(request).await.unwrap();
    Link {
        id: reply.link.unwrap().id,
        secret: reply.url.rsplit('/').next().unwrap().to_string(),
        download: None,
    }
}

fn folder_link() -> proto::CreateLinkRequest {
    proto::CreateLinkRequest {
        path: b"/proj".to_vec().into(),
        role: LinkRole::LinkViewer as i32,
        ..Default::default()
    }
}

async fn link_matrix(kind: Kind) {
    let world = World::start(kind).await;
    let (owner, session) = world.user("alice").await;
    let (editor, _) = world.user("eddie").await;
    let (revoked, _) = world.user("rex").await;
    let (commenter, _) = world.user("cora").await;
    let proj = owner.create(dir(session.root, "proj")).await.unwrap();
    let content: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    put(&owner, proj.id, "doc.txt", &content).await;
    let sub = owner.create(dir(proj.id, "sub")).await.unwrap();
    put(&owner, sub.id, "inner.txt", b"inside").await;
    for (name, role) in [
        ("eddie", Role::Editor),
        ("rex", Role::Editor),
        ("cora", Role::Commenter),
    ] {
        owner.share(share(proj.id, name, role)).await.unwrap();
    }
    let refused = commenter.create_link(folder_link()).await.unwrap_err();
    assert_eq!(
        refused.kind,
        loft_remote::errors::ErrorKind::PermissionDenied
    );

    let password = make_link(
        &owner,
        proto::CreateLinkRequest {
            password: PASSWORD.into(),
            ..folder_link()
        },
    )
    .await;
    let mut links = BTreeMap::new();
    links.insert("owner's", make_link(&owner, folder_link()).await);
    links.insert("editor's", make_link(&editor, folder_link()).await);
    links.insert("revoked editor's", make_link(&revoked, folder_link()).await);
    links.insert(
        "wrong password",
        Link {
            id: password.id,
            secret: password.secret.clone(),
            download: None,
        },
    );
    links.insert("right password", password);
    links.insert(
        "expired",
        make_link(
            &owner,
            proto::CreateLinkRequest {
                expires_in: 3,
                ..folder_link()
            },
        )
        .await,
    );
    links.insert(
        "upload-only",
        make_link(
            &owner,
            proto::CreateLinkRequest {
                role: LinkRole::LinkUpload as i32,
                ..folder_link()
            },
        )
        .await,
    );
    links.insert("revoked", make_link(&owner, folder_link()).await);
    links.insert(
        "used up",
        make_link(
            &owner,
            proto::CreateLinkRequest {
                max_downloads: 1,
                ..folder_link()
            },
        )
        .await,
    );
    let mut f = Fixture {
        world,
        http: client(),
        owner: owner.clone(),
        links,
        content,
    };

    // While every link is live, take the download URLs its visitors were given.
    for which in ["revoked editor's", "expired", "revoked", "used up"] {
        let url = f.download_url(which).await;
        assert!(url.contains("sig="), "{which}: no download button: {url}");
        f.links.get_mut(which).unwrap().download = Some(url);
    }
    // Then: the editor who made a link loses the share, a link is revoked, one is
    // used up, one expires.
    assert_eq!(owner.revoke_share(proj.id, "rex").await.unwrap(), ["rex"]);
    owner.revoke_link(f.links["revoked"].id).await.unwrap();
    let used = f.links["used up"].download.clone().unwrap();
    let first = f.http.get(&used).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.bytes().await.unwrap().len(), f.content.len());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while f.run("page", "expired").await != "404" || f.run("page", "used up").await != "404" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired or used-up link still opens"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut wrong = Vec::new();
    for (op, expected) in MATRIX {
        for (column, which) in LINKS.iter().enumerate() {
            let got = f.run(op, which).await;
            if got != expected[column] {
                wrong.push(format!(
                    "{op} through the {which} link: expected {}, got {got}",
                    expected[column]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "link matrix:\n{}", wrong.join("\n"));
}

on_both_backends!(link_matrix);
