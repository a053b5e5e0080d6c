//! The judgement on a VAE trained on procedural dSprites: the
//! x-position attribute vector moves the decoded sprite's centroid along x
//! monotonically with the strength and leaves y within a pixel; traversing
//! the most informative unit changes the image, an inactive unit does not.

use latentlab_data::dsprites::{self, FACTOR_NAMES, SIDE};
use latentlab_manipulate::{Manipulator, traverse};
use latentlab_model::{
    Control, LatentModel, ModelConfig, SavePolicy, TrainConfig, Trainer, evaluate,
};
use latentlab_tensor::{Activation, Cpu};
use ndarray::{Array2, Axis};

fn centroid(img: ndarray::ArrayView1<'_, f32>) -> (f64, f64) {
    let (mut sx, mut sy, mut m) = (0.0, 0.0, 0.0);
    for (i, &p) in img.iter().enumerate() {
        let p = f64::from(p);
        sx += p * ((i % SIDE) as f64 + 0.5);
        sy += p * ((i / SIDE) as f64 + 0.5);
        m += p;
    }
    (sx / m.max(1e-9), sy / m.max(1e-9))
}

#[test]
fn position_edits_and_traversals_behave_on_dsprites() {
    // A β-VAE (β = 10), as dSprites studies use: unused units close.
    let split = dsprites::split(12_000, 1_000, 3);
    let cfg = ModelConfig {
        input_dim: SIDE * SIDE,
        hidden: vec![256],
        latent: 24,
        activation: Activation::Relu,
        image_shape: Some((SIDE, SIDE)),
        ..ModelConfig::mnist(24)
    };
    let run = TrainConfig {
        epochs: 6,
        batch_size: 64,
        seed: 1,
        beta: 10.0,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(Cpu::new(), cfg, run).unwrap();
    t.fit(
        &split.train,
        &split.test,
        &SavePolicy::default(),
        &mut |_| Control::Continue,
    )
    .unwrap();
    let model = t.into_model();
    let test = &split.test;
    let factors = test.factor_classes.clone().unwrap();
    let names: Vec<String> = FACTOR_NAMES.iter().map(|s| s.to_string()).collect();
    let mut man = Manipulator::new(&model);
    let train_factors = split.train.factor_classes.clone().unwrap();
    man.factor_vectors(split.train.images.view(), train_factors.view(), &names)
        .unwrap();
    // Sprites away from the borders (x and y classes 8..24 of 32).
    let central: Vec<usize> = (0..test.len())
        .filter(|&i| (10..22).contains(&factors[[i, 3]]) && (10..22).contains(&factors[[i, 4]]))
        .take(40)
        .collect();
    assert!(central.len() >= 20);
    let x = test.images.select(Axis(0), &central);
    let strengths = [-1.5f32, -0.75, 0.0, 0.75, 1.5];
    let mut cx = Vec::new();
    let mut cy = Vec::new();
    for &s in &strengths {
        let dec = man.apply(x.view(), "factor:pos_x", s).unwrap();
        let c: Vec<(f64, f64)> = dec.rows().into_iter().map(centroid).collect();
        cx.push(c.iter().map(|p| p.0).sum::<f64>() / c.len() as f64);
        cy.push(c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64);
    }
    assert!(
        cx.windows(2).all(|w| w[1] > w[0]),
        "centroid x must grow with the strength: {cx:?}"
    );
    assert!(cx[4] - cx[0] > 4.0, "the edit moves the sprite: {cx:?}");
    let y_span = cy.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - cy.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(y_span < 1.0, "y stays within a pixel: {cy:?}");

    // Traversals: the most informative unit changes pixels, an inactive one
    // does not.
    let m = evaluate(&model, test.view(), 500, 0).unwrap();
    let mut order: Vec<usize> = (0..24).collect();
    order.sort_by(|&a, &b| m.kl_per_dim[b].total_cmp(&m.kl_per_dim[a]));
    let (top, bottom) = (order[0], order[23]);
    assert!(
        m.kl_per_dim[bottom] < 0.05,
        "an inactive unit exists: {:?}",
        m.kl_per_dim
    );
    let z = model
        .encode(x.slice(ndarray::s![0..1, ..]))
        .unwrap()
        .mu
        .row(0)
        .to_owned();
    // Pixels whose intensity changes by more than half between the ends of
    // a ±2.5 traversal.
    let change = |dim: usize| -> usize {
        let t: Array2<f32> = traverse(&model, z.view(), dim, -2.5, 2.5, 7).unwrap();
        (&t.row(6) - &t.row(0))
            .iter()
            .filter(|v| v.abs() > 0.5)
            .count()
    };
    let (moved, still) = (change(top), change(bottom));
    eprintln!("centroid x {cx:.2?}, y {cy:.2?}; pixels changed: top {moved}, inactive {still}");
    assert!(
        moved >= 40 && still == 0,
        "pixels changed: top unit {moved}, inactive unit {still}"
    );
}
