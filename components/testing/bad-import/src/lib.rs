//! Imports `acme:inventory/stock`, which no Berth host provides.

wit_bindgen::generate!({
    inline: r#"
        package acme:inventory;

        interface stock {
            count: func(sku: string) -> u32;
        }

        world bad-import {
            import stock;
            export run: func() -> u32;
        }
    "#,
});

struct Component;

impl Guest for Component {
    fn run() -> u32 {
        acme::inventory::stock::count("sku-1")
    }
}

export!(Component);
