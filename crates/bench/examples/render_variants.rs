//! Writes every condition variant of an image, for looking at them:
//! `cargo run -p streamer-bench --example render_variants -- IMAGE OUT_DIR`
//! produces `OUT_DIR/<stem>-<variant>.png`.

use std::path::PathBuf;

use streamer_bench::{apply, Variant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: render_variants IMAGE OUT_DIR".into());
    };
    let input = PathBuf::from(input);
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let img = image::open(&input)?.to_rgb8();
    let stem = input
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    for v in Variant::ALL {
        let p = out.join(format!("{stem}-{v}.png"));
        apply(v, &img).save(&p)?;
        println!("{}", p.display());
    }
    Ok(())
}
