// The shop's own API (orders, products, customers) behind keygate's Express guard, on sample data kept in memory.

import express from 'express';
import { apiKeyGuard } from 'keygate/express';

/** Sample data a new server starts with; every app gets its own copy. */
function sampleData() {
  return {
    customers: [
      { id: 'cus_1001', name: 'Northwind Traders', email: 'orders@northwind.example', country: 'DE' },
      { id: 'cus_1002', name: 'Blue Harbor Supply', email: 'buying@blueharbor.example', country: 'NL' },
      { id: 'cus_1003', name: 'Casa Verde Mercado', email: 'compras@casaverde.example', country: 'ES' },
    ],
    products: [
      { id: 'prd_2001', sku: 'COF-1KG', name: 'Espresso beans 1 kg', price: 18.5, stock: 240 },
      { id: 'prd_2002', sku: 'TEA-500', name: 'Green tea 500 g', price: 9.9, stock: 410 },
      { id: 'prd_2003', sku: 'CUP-12', name: 'Paper cups, 12 oz (box of 1000)', price: 42, stock: 75 },
    ],
    orders: [
      { id: 'ord_3001', customerId: 'cus_1001', status: 'shipped', lines: [{ productId: 'prd_2001', quantity: 20 }], total: 370 },
      { id: 'ord_3002', customerId: 'cus_1002', status: 'processing', lines: [{ productId: 'prd_2003', quantity: 4 }], total: 168 },
      { id: 'ord_3003', customerId: 'cus_1003', status: 'new', lines: [{ productId: 'prd_2002', quantity: 30 }], total: 297 },
    ],
  };
}

/** What a create request must carry, per resource. */
const REQUIRED_FIELDS = {
  orders: ['customerId'],
  products: ['sku', 'name'],
  customers: ['name', 'email'],
};
const ID_PREFIX = { orders: 'ord', products: 'prd', customers: 'cus' };

/**
 * The store API: `GET /orders` needs `orders:list`, `POST /orders` needs `orders:edit`, and the
 * same for products and customers.
 *
 * @param {import('keygate').KeyManager} keys
 * @param {{ trustedProxies?: string | readonly string[] }} [options] the proxies whose `X-Forwarded-For` is believed
 * @returns {import('express').Router}
 */
export function storeApi(keys, options = {}) {
  const { trustedProxies } = options;
  const data = sampleData();
  let nextId = 4000;
  const router = express.Router();
  // Parsed after the guard, so a request without a valid key learns nothing about the body rules.
  const json = express.json({ limit: '16kb' });

  for (const resource of /** @type {const} */ (['orders', 'products', 'customers'])) {
    router.get(`/${resource}`, apiKeyGuard(keys, { scope: `${resource}:list`, trustedProxies }), (req, res) => {
      const key = /** @type {import('keygate').ApiKey} */ (req.apiKey);
      res.json({ data: data[resource], key: { id: key.id, name: key.name } });
    });

    router.post(`/${resource}`, apiKeyGuard(keys, { scope: `${resource}:edit`, trustedProxies }), json, (req, res) => {
      const body = req.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return res.status(400).json({ error: { code: 'invalid_body', message: 'Send a JSON object.' } });
      }
      for (const field of REQUIRED_FIELDS[resource]) {
        if (typeof body[field] !== 'string' || body[field].trim() === '') {
          return res.status(400).json({ error: { code: 'invalid_body', field, message: `${field} is required (a string).` } });
        }
      }
      const record = { ...body, id: `${ID_PREFIX[resource]}_${nextId++}` };
      data[resource].push(record);
      res.status(201).json({ data: record });
    });
  }

  router.use((req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'Try GET or POST /api/orders, /api/products or /api/customers.' } });
  });
  return router;
}
