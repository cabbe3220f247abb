// The ESM entry: the same API as index.js (CommonJS), which it re-exports.
import quicrpc from './index.js';

export const { Client, Metadata, status } = quicrpc;
export default quicrpc;
