"""The worker side of chatd: acquiring chats, running their turns, and publishing their events."""
