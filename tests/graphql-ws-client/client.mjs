// Subscribes to submissionStatusChanged with the graphql-ws client, prints each change as one
// JSON line, and completes the subscription after the wanted number of changes.
// Usage: node client.mjs <ws-url> <token> <providerId> <after-cursor> <count>
// Exit codes: 0 done, 1 an error or an early close, 2 timed out.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, providerId, after, countArg] = process.argv.slice(2);
const wanted = Number(countArg ?? '1');

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
});

const query = `subscription($providerId: ID!, $after: String) {
  submissionStatusChanged(providerId: $providerId, after: $after) { cursor kind fromStatus toStatus }
}`;

const describe = (error) =>
  error instanceof Error
    ? error.message
    : error && typeof error === 'object' && 'code' in error
      ? `socket closed with ${error.code} ${error.reason}`
      : JSON.stringify(error);

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 30_000);

let received = 0;
try {
  await new Promise((resolve, reject) => {
    const unsubscribe = client.subscribe(
      { query, variables: { providerId, after } },
      {
        next: (result) => {
          if (result.errors) {
            reject(new Error(JSON.stringify(result.errors)));
            return;
          }
          console.log(JSON.stringify(result.data.submissionStatusChanged));
          received += 1;
          if (received >= wanted) {
            unsubscribe();
            resolve();
          }
        },
        error: (error) => reject(new Error(describe(error))),
        complete: () =>
          received >= wanted ? resolve() : reject(new Error('completed too early')),
      },
    );
  });
} catch (error) {
  console.error(describe(error));
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  await client.dispose();
}
