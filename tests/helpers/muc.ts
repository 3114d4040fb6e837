// MUC helpers for tests: a server with a conference service, joining, and reading muc#user items.
import { RawClient } from "./raw_client.ts";
import type { TestServer } from "./server.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

export const MUC = "conference.localhost";

/** Server overrides that add the conference service (with `muc` merged into its settings). */
export function mucServer(muc: Record<string, unknown> = {}): Record<string, unknown> {
  return { hosts: [{ domain: "localhost", muc: { domain: MUC, ...muc } }] };
}

export const isPresence = (from: string, type?: string) => (e: Element) =>
  e.name === "presence" && e.attrs.from === from && e.attrs.type === type;

export const isMessage = (from: string, type = "groupchat") => (e: Element) =>
  e.name === "message" && e.attrs.from === from && e.attrs.type === type;

export function mucUser(e: Element): Element | undefined {
  return e.child("x", NS.mucUser);
}

export function statusCodes(e: Element): number[] {
  return (mucUser(e)?.elements("status") ?? []).map((s) => Number(s.attrs.code));
}

export function item(e: Element): Record<string, string | undefined> {
  return mucUser(e)?.child("item")?.attrs ?? {};
}

export function errorCondition(e: Element): string | undefined {
  return e.child("error")?.elements()[0]?.name;
}

/** Sends a join and returns the self-presence (status 110) or the error presence. */
export async function join(
  c: RawClient,
  room: string,
  nick: string,
  extra = "",
  expectedNick = nick,
): Promise<Element> {
  // Presence from the room received earlier (e.g. a self-presence before a removal) is not the answer.
  const earlier = (e: Element) =>
    e.name === "presence" && e.attrs.from?.startsWith(`${room}@${MUC}/`);
  c.received.splice(0, c.received.length, ...c.received.filter((e) => !earlier(e)));
  c.send(
    `<presence to='${room}@${MUC}/${nick}'><x xmlns='${NS.muc}'>${extra}</x></presence>`,
  );
  return await c.waitFor(
    (e) =>
      e.name === "presence" && e.attrs.from?.startsWith(`${room}@${MUC}/`) === true &&
      (e.attrs.type === "error" ||
        (e.attrs.from === `${room}@${MUC}/${expectedNick}` && statusCodes(e).includes(110))),
    5000,
    `joining ${room} as ${nick}`,
  );
}

/** Joins as the creator and accepts the default configuration (an instant room). */
export async function createRoom(c: RawClient, room: string, nick: string): Promise<Element> {
  const self = await join(c, room, nick);
  if (!statusCodes(self).includes(201)) throw new Error(`room ${room} already existed`);
  await ownerSubmit(c, room, "");
  return self;
}

/** Submits the muc#roomconfig form with the given fields ("" = instant room). */
export async function ownerSubmit(c: RawClient, room: string, fields: string): Promise<Element> {
  return await c.iq(
    "set",
    `<query xmlns='${NS.mucOwner}'><x xmlns='jabber:x:data' type='submit'>${fields}</x></query>`,
    `${room}@${MUC}`,
  );
}

export function field(name: string, ...values: string[]): string {
  return `<field var='${name}'>${values.map((v) => `<value>${v}</value>`).join("")}</field>`;
}

export async function login(port: number, user: string, resource?: string): Promise<RawClient> {
  return await RawClient.login(port, user, "secret", { resource });
}

/** Creates the accounts and logs one session of each in. */
export async function accounts(t: TestServer, ...users: string[]): Promise<RawClient[]> {
  for (const u of users) await t.addUser(u);
  return await Promise.all(users.map((u) => login(t.port, u)));
}
