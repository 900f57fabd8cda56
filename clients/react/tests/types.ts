// Compiled by `tsc --noEmit -p clients/react` (make test): the generated protocol types and
// the hooks' types, used as an app would use them. Nothing here runs.
import type {
  ChatMessage,
  Command,
  CommandByName,
  ContinueCommand,
  ErrorCode,
  Frame,
  FrameByType,
  FrameType,
  Thread,
} from '../index.js';
import { useStreamingResponse, useThread } from '../index.js';
import type { MessageObject } from '../protocol.js';

/** Every frame type handled: a new frame in chat/frames.py fails this switch until handled. */
export function describe(frame: Frame): string {
  switch (frame.type) {
    case 'ready':
      return frame.active ? `resume ${frame.active.message_id} at ${frame.active.seq}` : 'ready';
    case 'message':
      return frame.message.content;
    case 'start':
      return frame.model;
    case 'token':
      return frame.token;
    case 'tool':
      return `${frame.name}: ${frame.status}`;
    case 'complete':
      return `${frame.status} in ${frame.metrics.elapsedSeconds}s`;
    case 'error':
      return `${frame.code}${frame.message_id ? ` ending ${frame.message_id}` : ''}`;
    case 'heartbeat':
      return frame.active === undefined ? 'unknown' : String(frame.active?.seq ?? 'idle');
    case 'thread':
      return `${frame.thread.title} (${frame.thread.active_leaf ?? 'empty'})`;
    case 'thread_deleted':
      return frame.thread_id;
    case 'feedback':
      return `${frame.message_id}: ${frame.feedback?.rating ?? 'removed'}`;
    default: {
      const unhandled: never = frame;
      return unhandled;
    }
  }
}

export const commands: Command[] = [
  { command: 'start', message: 'Hello', client_id: crypto.randomUUID(), time_zone: 'Europe/Paris' },
  { command: 'stop' },
  { command: 'heartbeat' },
  { command: 'resync' },
  { command: 'regenerate' },
  { command: 'edit', message_id: 'm', message: 'Better question' },
];
export const later: ContinueCommand = { command: 'continue', message_id: 'm' };

const token: FrameByType['token'] = { type: 'token', ts: 1, message_id: 'm', seq: 1, token: 'Hi' };
const start: CommandByName['start'] = { command: 'start', message: 'Hi' };
const types: FrameType[] = ['ready', 'thread_deleted'];
const code: ErrorCode = 'quota_exceeded';
// @ts-expect-error: `seq` of a start frame is always 0
export const badStart: FrameByType['start'] = { type: 'start', ts: 1, message_id: 'm', seq: 1, model: 'x' };
// @ts-expect-error: no such error code
export const badCode: ErrorCode = 'oops';
export const used = [token, start, types, code];

export function toMessage(saved: MessageObject): string {
  return `${saved.role}: ${saved.content} (${saved.status})`;
}

export function useBoth(threadId: string | null): [Thread, ChatMessage | null] {
  const thread = useThread(threadId, { baseUrl: 'https://chat.example.com', clientSecret: 'cs_x', timing: { backoffCapMs: 5000 } });
  const { reply, send } = useStreamingResponse({ retries: 2 });
  void send('Hi', { threadId: thread.threadId ?? undefined }).then((done) => done?.metrics?.totalTokens);
  const last = thread.messages.at(-1);
  if (last?.truncated) thread.continue(last.id);
  if (thread.fatal === 4401) thread.reconnect();
  return [thread, reply];
}
